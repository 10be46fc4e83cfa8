//! Warm pools against the real control plane (in process) with the fake backend: a pool fills,
//! an Agent claims a member without a new container and gets its own inputs delivered, the pool
//! refills, a Bottle change replaces pooled members but never claimed ones, a deleted pool
//! takes its members along, and claims racing for few members never share one.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bb_backend::Step;
use bb_backend::provision::POOL_MEMBER;
use bb_crds::pool::{AgentPoolStatus, PoolMember};
use bb_crds::{Agent, AgentPhase, AgentPool, Bottle};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use support::{Harness, events_with};

fn pools(h: &Harness) -> Api<AgentPool> {
    Api::namespaced(h.client.clone(), "default")
}

async fn create_pool(h: &Harness, size: i64) {
    create_pool_with(
        h,
        "warm",
        json!({"bottleRef": {"name": "tools"}, "size": size}),
    )
    .await;
}

async fn create_pool_with(h: &Harness, name: &str, spec: serde_json::Value) {
    let pool: AgentPool = serde_json::from_value(json!({
        "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "AgentPool",
        "metadata": {"name": name},
        "spec": spec
    }))
    .expect("pool");
    pools(h)
        .create(&PostParams::default(), &pool)
        .await
        .expect("create the pool");
}

/// Waits until the pool's status satisfies `check`; returns it.
async fn wait_pool(
    h: &Harness,
    what: &str,
    check: impl Fn(&AgentPoolStatus) -> bool,
) -> AgentPoolStatus {
    wait_named_pool(h, "warm", what, check).await
}

async fn wait_named_pool(
    h: &Harness,
    name: &str,
    what: &str,
    check: impl Fn(&AgentPoolStatus) -> bool,
) -> AgentPoolStatus {
    let mut last = None;
    for _ in 0..400 {
        if let Ok(Some(p)) = pools(h).get_opt(name).await {
            let s = p.status.unwrap_or_default();
            if check(&s) {
                return s;
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for the pool: {what}; last: {last:#?}");
}

fn full(size: usize) -> impl Fn(&AgentPoolStatus) -> bool {
    move |s| {
        s.ready as usize == size && s.members.len() == size && s.members.iter().all(|m| m.ready)
    }
}

async fn create_bottle(h: &Harness) {
    h.create_secret().await;
    h.create_bottle().await;
}

async fn create_agent(h: &Harness, name: &str, prompt: &str) {
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Agent", "metadata": {"name": name},
        "spec": {"bottleRef": {"name": "tools"}, "prompt": prompt}
    }))
    .expect("agent");
    h.agents()
        .create(&PostParams::default(), &agent)
        .await
        .expect("agent");
}

async fn wait_running(h: &Harness, name: &str) -> Agent {
    for _ in 0..400 {
        if let Ok(Some(a)) = h.agents().get_opt(name).await
            && a.status.as_ref().and_then(|s| s.phase) == Some(AgentPhase::Running)
        {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "agent/{name} never ran: {:#?}",
        h.agents().get_opt(name).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_fills_an_agent_claims_a_member_in_place_and_the_pool_refills() {
    let h = Harness::start().await;
    create_bottle(&h).await;
    create_pool(&h, 2).await;
    let filled = wait_pool(&h, "2 ready members", full(2)).await;
    for m in &filled.members {
        let fake = h
            .backend
            .snapshot_of(&m.name)
            .expect("a member's resources");
        assert_eq!(fake.provisioned.as_deref(), Some(POOL_MEMBER), "{}", m.name);
        assert_eq!(
            (fake.agent_creates, fake.sidecar_creates),
            (1, 1),
            "{}",
            m.name
        );
        assert!(
            fake.sidecar_policy.is_some(),
            "{}: no sidecar policy",
            m.name
        );
    }
    assert_eq!(
        h.backend.count(),
        2,
        "a member started twice, or something else ran"
    );

    create_agent(&h, "first", "only mine").await;
    let a = wait_running(&h, "first").await;
    let copy = a
        .status
        .as_ref()
        .and_then(|s| s.bottle_copy.clone())
        .expect("the Agent names the member it claimed");
    assert_eq!(copy.pool, "warm");
    let member = filled
        .members
        .iter()
        .find(|m| m.uid == copy.uid)
        .expect("the claimed member was one of the pool's");
    assert_eq!(member.name, copy.name);
    // The member's container was kept; the Agent's own inputs were delivered into it.
    let fake = h
        .backend
        .snapshot_of(&copy.name)
        .expect("the claimed member");
    assert_eq!(fake.agent_creates, 1, "claiming made a new agent container");
    assert_eq!(fake.sidecar_creates, 1, "claiming made a new sidecar");
    assert_eq!(
        fake.provisions, 2,
        "the Agent's inputs were not delivered once"
    );
    let delivered = fake.provisioned.clone().expect("provisioned");
    assert_ne!(
        delivered, POOL_MEMBER,
        "the member still holds no Agent's inputs"
    );
    assert!(
        h.backend.snapshot_of("first").is_none(),
        "the Agent started a bottle of its own as well"
    );
    // Sessions find the claimed member under the Agent's name.
    assert!(
        h.session_plans.get(&copy.uid).is_some(),
        "no session plan for the member"
    );

    // The pool refills with a new member, never the claimed one.
    let refilled = wait_pool(&h, "refilled to 2", full(2)).await;
    assert!(!refilled.members.iter().any(|m| m.uid == copy.uid));
    let events = events_with(&h.client, &["Claimed", "MemberStarted"]).await;
    assert!(events.contains("Claimed"), "{events}");

    // Deleting the Agent removes the member it ran in, and nothing else.
    h.agents()
        .delete("first", &DeleteParams::default())
        .await
        .expect("delete");
    for _ in 0..200 {
        if h.backend.snapshot_of(&copy.name).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        h.backend.snapshot_of(&copy.name).is_none(),
        "the claimed member outlived its Agent"
    );
    assert_eq!(
        h.backend.count(),
        2,
        "the pool's members went with the Agent"
    );

    // Deleting the pool takes its members along.
    pools(&h)
        .delete("warm", &DeleteParams::default())
        .await
        .expect("delete the pool");
    for _ in 0..200 {
        if h.backend.count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.backend.count(), 0, "a deleted pool left members running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bottle_change_replaces_pooled_members_and_never_a_claimed_one() {
    let h = Harness::start().await;
    create_bottle(&h).await;
    create_pool(&h, 2).await;
    let before = wait_pool(&h, "2 ready members", full(2)).await;
    create_agent(&h, "keeper", "stay").await;
    let a = wait_running(&h, "keeper").await;
    let claimed = a.status.and_then(|s| s.bottle_copy).expect("claimed");
    let refilled = wait_pool(&h, "refilled", full(2)).await;

    let bottles: Api<Bottle> = Api::all(h.client.clone());
    bottles
        .patch(
            "tools",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"egress": {"routes": [
                {"host": "api.example.com", "auth": {"scheme": "Bearer", "secretKeyRef": {"name": "api-token", "key": "token"}}},
                {"host": "docs.example.com"}
            ]}}})),
        )
        .await
        .expect("patch the bottle");
    let old: Vec<&PoolMember> = before.members.iter().chain(&refilled.members).collect();
    let after = wait_pool(&h, "members of the new plan", |s| {
        full(2)(s) && !s.members.iter().any(|m| old.iter().any(|o| o.uid == m.uid))
    })
    .await;
    for m in old.iter().filter(|m| m.uid != claimed.uid) {
        assert!(
            h.backend.snapshot_of(&m.name).is_none(),
            "stale member {} still runs",
            m.name
        );
    }
    // The claimed member kept its container and took the new policy in place.
    let keeper = h
        .backend
        .snapshot_of(&claimed.name)
        .expect("the claimed member is kept");
    assert_eq!(keeper.agent_creates, 1, "the claimed agent was recreated");
    let policy = keeper.sidecar_policy_yaml.clone().unwrap_or_default();
    for _ in 0..200 {
        if h.backend
            .snapshot_of(&claimed.name)
            .and_then(|k| k.sidecar_policy_yaml)
            .is_some_and(|p| p.contains("docs.example.com"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = h
        .backend
        .snapshot_of(&claimed.name)
        .expect("claimed member");
    assert!(
        now.sidecar_policy_yaml
            .unwrap_or_default()
            .contains("docs.example.com"),
        "the claimed Agent's sidecar never got the new route (had {policy})"
    );
    assert_eq!(now.agent_creates, 1);
    assert_eq!(h.backend.count(), 3, "{after:#?}");
}

/// The API's optimistic concurrency is what keeps a member with one Agent: 50 claims starting
/// from the same cached pool race for its 10 members; 10 win, each a different member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_claims_racing_for_ten_members_ten_win_none_twice() {
    let mut h = Harness::start().await;
    // No reconciler refills the pool meanwhile: the members are exactly the ten below.
    h.kill_controller();
    create_bottle(&h).await;
    create_pool(&h, 10).await;
    let mut pool = pools(&h).get("warm").await.expect("pool");
    pool.status = Some(AgentPoolStatus {
        members: (0..10)
            .map(|i| PoolMember {
                name: format!("warm-m{i}"),
                uid: format!("uid-{i}"),
                plan_hash: "plan".into(),
                ready: true,
                ..Default::default()
            })
            .collect(),
        ready: 10,
        ..Default::default()
    });
    let pool = pools(&h)
        .replace_status("warm", &PostParams::default(), &pool)
        .await
        .expect("seed the pool's members");
    let cached = Arc::new(pool);
    let claims: Vec<_> = (0..50)
        .map(|_| {
            let (client, cached) = (h.client.clone(), cached.clone());
            tokio::spawn(async move {
                bb_runner::reconcile::claim::claim(&client, vec![cached], "plan", None).await
            })
        })
        .collect();
    let mut won = Vec::new();
    for c in claims {
        if let Some(copy) = c.await.expect("join").expect("claim") {
            won.push(copy.uid);
        }
    }
    won.sort();
    let mut distinct = won.clone();
    distinct.dedup();
    assert_eq!(won.len(), 10, "winners: {won:?}");
    assert_eq!(distinct.len(), 10, "a member was claimed twice: {won:?}");
    let left = pools(&h)
        .get("warm")
        .await
        .expect("pool")
        .status
        .unwrap_or_default();
    assert!(left.members.is_empty(), "{left:#?}");
    assert_eq!(left.ready, 0);
}

/// `spec.maxStarting` bounds how many members start at once: one with 1, and more than one
/// with the default (the positive control: the bound is what holds them back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_start_at_most_max_starting_at_once() {
    let h = Harness::start().await;
    create_bottle(&h).await;
    h.backend.hang(Step::Agent, Duration::from_millis(150));
    create_pool_with(
        &h,
        "narrow",
        json!({"bottleRef": {"name": "tools"}, "size": 3, "maxStarting": 1}),
    )
    .await;
    wait_named_pool(&h, "narrow", "3 ready members", full(3)).await;
    assert_eq!(
        h.backend.most_at_once(Step::Agent),
        1,
        "maxStarting 1 started more at once"
    );
    create_pool_with(
        &h,
        "wide",
        json!({"bottleRef": {"name": "tools"}, "size": 3}),
    )
    .await;
    wait_named_pool(&h, "wide", "3 ready members", full(3)).await;
    assert_eq!(
        h.backend.most_at_once(Step::Agent),
        2,
        "the default is two at once"
    );
}

/// A member that fails to start is retried (a `MemberFailed` event) until it starts; one whose
/// container goes away later is started again in place (`MemberLost`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_member_is_retried_and_a_lost_one_is_started_again() {
    let h = Harness::start().await;
    create_bottle(&h).await;
    h.backend.fail(Step::Agent, 2);
    create_pool(&h, 1).await;
    let filled = wait_pool(&h, "1 ready member after the failures", full(1)).await;
    let events = events_with(&h.client, &["MemberFailed", "MemberStarted"]).await;
    assert!(
        events.contains("MemberFailed") && events.contains("injected failure"),
        "{events}"
    );
    assert_eq!(
        h.backend.attempts(Step::Agent),
        3,
        "two failures, then the start"
    );
    let ready = filled
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Full")
    );

    let member = filled.members[0].name.clone();
    h.backend.vanish_agent(&member);
    let events = events_with(&h.client, &["MemberLost"]).await;
    assert!(events.contains("MemberLost"), "{events}");
    let again = wait_pool(&h, "the lost member ready again", |s| {
        full(1)(s)
            && h.backend
                .snapshot_of(&member)
                .is_some_and(|f| f.agent_hash.is_some())
    })
    .await;
    assert_eq!(
        again.members[0].name, member,
        "the lost member was replaced, not restarted"
    );
    let fake = h.backend.snapshot_of(&member).expect("member");
    assert_eq!(fake.agent_creates, 2);
    assert_eq!(fake.provisioned.as_deref(), Some(POOL_MEMBER));
}

/// `status.bottleCopy` is only a pointer: an Agent whose status names another Agent's member
/// (written by whoever may write status, not by the runner that gave the member) runs its own
/// bottle, never provisions into the member, and its deletion leaves the member running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_bottle_copy_never_reaches_another_agents_member() {
    let h = Harness::start().await;
    create_bottle(&h).await;
    create_pool(&h, 1).await;
    wait_pool(&h, "1 ready member", full(1)).await;
    create_agent(&h, "victim", "the victim's task").await;
    let victim = wait_running(&h, "victim").await;
    let copy = victim
        .status
        .and_then(|s| s.bottle_copy)
        .expect("the victim claimed the member");
    // No member left to claim for anyone else.
    pools(&h)
        .delete("warm", &DeleteParams::default())
        .await
        .expect("delete the pool");
    create_agent(&h, "forger", "the forger's task").await;
    wait_running(&h, "forger").await;
    let before = h
        .backend
        .snapshot_of(&copy.name)
        .expect("the victim's member");
    assert_eq!((before.agent_creates, before.provisions), (1, 2));

    // The forgery, then a spec change so the runner reconciles with it in view.
    h.agents()
        .patch_status(
            "forger",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"bottleCopy": copy}})),
        )
        .await
        .expect("forge the status");
    h.agents()
        .patch(
            "forger",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"prompt": "now reach the victim"}})),
        )
        .await
        .expect("change the forger's spec");
    for _ in 0..400 {
        let a = h.agents().get("forger").await.expect("forger");
        let st = a.status.clone().unwrap_or_default();
        if st.observed_generation == a.metadata.generation && st.phase == Some(AgentPhase::Running)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let own = h
        .backend
        .snapshot_of("forger")
        .expect("the forger's own bottle");
    assert_eq!(
        own.agent_creates, 2,
        "the forger's own container took its new prompt"
    );
    let after = h
        .backend
        .snapshot_of(&copy.name)
        .expect("the victim's member");
    assert_eq!(
        (
            after.agent_creates,
            after.provisions,
            after.provisioned.clone()
        ),
        (
            before.agent_creates,
            before.provisions,
            before.provisioned.clone()
        ),
        "the forger reached the victim's member"
    );

    h.agents()
        .delete("forger", &DeleteParams::default())
        .await
        .expect("delete the forger");
    for _ in 0..200 {
        if h.backend.snapshot_of("forger").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        h.backend.snapshot_of("forger").is_none(),
        "the forger's own bottle is left"
    );
    assert!(
        h.backend
            .snapshot_of(&copy.name)
            .is_some_and(|m| m.agent_hash.is_some()),
        "deleting the forger removed the victim's member"
    );
    let victim = h.agents().get("victim").await.expect("victim");
    assert_eq!(
        victim.status.and_then(|s| s.phase),
        Some(AgentPhase::Running)
    );
}
