//! `bbctl supervise`: a terminal UI over the pending Proposals of every Agent in reach: read the
//! justification, the reach summary and the diff, then approve, modify and approve, or reject.

mod app;
mod view;

use std::time::{Duration, Instant};

use bb_crds::Proposal;
use bb_crds::policy::proposal::parse_proposed_routes;
use bb_crds::proposal::{ProposalTool, Verdict};
use kube::api::{Api, ListParams};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use super::decide::write_decision;
use super::target::Target;
use crate::exit::{CliError, Kind};
use app::{App, Prompt};

#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    /// Proposals of every namespace, not only -n's.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    #[command(flatten)]
    target: Target,
}

/// What a key asks the loop to do beyond changing the state.
enum Step {
    Stay,
    Quit,
    Edit,
    Decide {
        verdict: Verdict,
        reason: String,
        expires: Option<String>,
        content: Option<String>,
    },
}

fn pending(list: Vec<Proposal>) -> Vec<Proposal> {
    let mut v: Vec<Proposal> = list
        .into_iter()
        .filter(|p| p.spec.decision.is_none())
        .collect();
    v.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    v
}

fn on_key(app: &mut App, code: KeyCode, mods: KeyModifiers) -> Step {
    if code == KeyCode::Char('c') && mods.contains(KeyModifiers::CONTROL) {
        return Step::Quit;
    }
    if let Some((prompt, buffer)) = app.prompt.as_mut() {
        match code {
            KeyCode::Esc => {
                app.prompt = None;
                app.message = "cancelled".into();
            }
            KeyCode::Backspace => {
                buffer.pop();
            }
            KeyCode::Char(c) => buffer.push(c),
            KeyCode::Enter => {
                let text = buffer.trim().to_string();
                let prompt = prompt.clone();
                return submit(app, prompt, text);
            }
            _ => {}
        }
        return Step::Stay;
    }
    match code {
        KeyCode::Char('q') | KeyCode::Esc => return Step::Quit,
        KeyCode::Down | KeyCode::Char('j') if app.selected + 1 < app.proposals.len() => {
            app.selected += 1;
            app.scroll = 0;
        }
        KeyCode::Up | KeyCode::Char('k') => {
            app.selected = app.selected.saturating_sub(1);
            app.scroll = 0;
        }
        KeyCode::PageDown | KeyCode::Char(' ') => app.scroll = app.scroll.saturating_add(10),
        KeyCode::PageUp => app.scroll = app.scroll.saturating_sub(10),
        KeyCode::Char('a') if app.current().is_some() => {
            app.prompt = Some((Prompt::ApproveReason { content: None }, String::new()));
        }
        KeyCode::Char('r') if app.current().is_some() => {
            app.prompt = Some((Prompt::RejectReason, String::new()));
        }
        KeyCode::Char('m') => {
            match app.current().map(|p| p.spec.tool) {
                Some(ProposalTool::GitleaksAllow) => {
                    app.message = "modify is not offered for gitleaks-allow: approve or reject the push as it is".into();
                }
                Some(_) => return Step::Edit,
                None => {}
            }
        }
        _ => {}
    }
    Step::Stay
}

fn submit(app: &mut App, prompt: Prompt, text: String) -> Step {
    let egress = app.current().is_some_and(|p| p.spec.tool.is_egress());
    match prompt {
        Prompt::ApproveReason { .. } | Prompt::RejectReason if text.is_empty() => {
            app.message = "a reason is required".into();
            Step::Stay
        }
        Prompt::ApproveReason { content } if egress => {
            app.prompt = Some((
                Prompt::ApproveExpiry {
                    reason: text,
                    content,
                },
                String::new(),
            ));
            Step::Stay
        }
        Prompt::ApproveReason { content } => {
            app.prompt = None;
            Step::Decide {
                verdict: Verdict::Approved,
                reason: text,
                expires: None,
                content,
            }
        }
        Prompt::ApproveExpiry { reason, content } => {
            if !text.is_empty()
                && let Err(m) = bb_crds::duration::parse_expiry(&text)
            {
                app.message = m;
                return Step::Stay;
            }
            app.prompt = None;
            Step::Decide {
                verdict: Verdict::Approved,
                reason,
                expires: (!text.is_empty()).then_some(text),
                content,
            }
        }
        Prompt::RejectReason => {
            app.prompt = None;
            Step::Decide {
                verdict: Verdict::Rejected,
                reason: text,
                expires: None,
                content: None,
            }
        }
    }
}

/// Opens the proposal's content in `$EDITOR` (outside the UI) and returns the edited text,
/// checked as the proposal's tool requires.
fn edit(p: &Proposal) -> Result<String, String> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let dir = std::env::temp_dir().join(format!("bbctl-supervise-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let ext = if p.spec.tool.is_egress() {
        "yaml"
    } else {
        "Dockerfile"
    };
    let file = dir.join(format!("proposal.{ext}"));
    std::fs::write(&file, &p.spec.content).map_err(|e| e.to_string())?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&file)
        .status()
        .map_err(|e| format!("running {editor}: {e}"))?;
    let text = std::fs::read_to_string(&file).map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        return Err(format!("{editor} exited with {status}; nothing approved"));
    }
    let text = text?;
    if p.spec.tool.is_egress() {
        parse_proposed_routes(&text).map_err(|e| {
            format!(
                "the edited routes are not valid: {}",
                bb_crds::policy::one_line(&e.to_string())
            )
        })?;
    } else if text.trim().is_empty() {
        return Err("the edited Dockerfile is empty".into());
    }
    Ok(text)
}

pub fn run(args: SuperviseArgs) -> Result<(), CliError> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return Err(CliError::new(
            Kind::Usage,
            "bbctl supervise needs a terminal; without one use `bbctl get proposals` and `bbctl approve|reject`",
        ));
    }
    let rt = super::runtime()?;
    let client = rt.block_on(args.target.client_autostart())?;
    let ns = args.target.namespace();
    let api: Api<Proposal> = if args.all_namespaces {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), &ns)
    };
    let mut app = App {
        proposals: Vec::new(),
        selected: 0,
        prompt: None,
        message: String::new(),
        color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        all_namespaces: args.all_namespaces,
        scroll: 0,
    };
    let load = |app: &mut App| match rt.block_on(api.list(&ListParams::default())) {
        Ok(list) => app.set(pending(list.items)),
        Err(e) => app.message = format!("listing proposals: {e}"),
    };
    load(&mut app);
    let mut terminal = ratatui::try_init()
        .map_err(|e| CliError::new(Kind::General, format!("starting the terminal UI: {e}")))?;
    let mut last_load = Instant::now();
    let result = loop {
        if let Err(e) = terminal.draw(|f| view::draw(f, &app)) {
            break Err(CliError::new(Kind::General, format!("drawing: {e}")));
        }
        if last_load.elapsed() >= Duration::from_secs(1) {
            load(&mut app);
            last_load = Instant::now();
        }
        match event::poll(Duration::from_millis(250)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => break Err(CliError::new(Kind::General, format!("reading keys: {e}"))),
        }
        let Ok(Event::Key(key)) = event::read() else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        match on_key(&mut app, key.code, key.modifiers) {
            Step::Stay => {}
            Step::Quit => break Ok(()),
            Step::Edit => {
                let Some(p) = app.current().cloned() else {
                    continue;
                };
                let _ = ratatui::try_restore();
                let edited = edit(&p);
                terminal = match ratatui::try_init() {
                    Ok(t) => t,
                    Err(e) => {
                        break Err(CliError::new(
                            Kind::General,
                            format!("restarting the terminal UI: {e}"),
                        ));
                    }
                };
                match edited {
                    Ok(text) => {
                        app.prompt = Some((
                            Prompt::ApproveReason {
                                content: Some(text),
                            },
                            String::new(),
                        ));
                        app.message = "edited; approve it with a reason".into();
                    }
                    Err(m) => app.message = m,
                }
            }
            Step::Decide {
                verdict,
                reason,
                expires,
                content,
            } => {
                let Some(p) = app.current().cloned() else {
                    continue;
                };
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Proposal> = Api::namespaced(client.clone(), &ns);
                let name = p.metadata.name.clone().unwrap_or_default();
                let done = rt.block_on(write_decision(
                    &api,
                    &p,
                    super::decide::Decision {
                        verdict,
                        reason: &reason,
                        expires_after: expires.as_deref(),
                        restart: false,
                    },
                    content,
                ));
                app.message = match done {
                    Ok(()) => format!(
                        "{name} {}",
                        if verdict == Verdict::Approved {
                            "approved"
                        } else {
                            "rejected"
                        }
                    ),
                    Err(e) => e.message,
                };
                load(&mut app);
                last_load = Instant::now();
            }
        }
    };
    let _ = ratatui::try_restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use bb_crds::proposal::{AgentRef, ProposalSpec};

    fn app(tool: ProposalTool) -> App {
        let p = Proposal::new(
            "p",
            ProposalSpec {
                agent_ref: AgentRef { name: "a".into() },
                tool,
                content: "routes: []\n".into(),
                justification: "j".into(),
                repo: None,
                queue_id: "allow-1".into(),
                decision: None,
                adds: vec![],
            },
        );
        App {
            proposals: vec![p],
            selected: 0,
            prompt: None,
            message: String::new(),
            color: false,
            all_namespaces: false,
            scroll: 0,
        }
    }

    fn keys(app: &mut App, text: &str) -> Option<Step> {
        let mut last = None;
        for c in text.chars() {
            let code = if c == '\n' {
                KeyCode::Enter
            } else {
                KeyCode::Char(c)
            };
            last = Some(on_key(app, code, KeyModifiers::NONE));
        }
        last
    }

    #[test]
    fn approving_egress_asks_reason_then_expiry() {
        let mut a = app(ProposalTool::EgressBlock);
        assert!(matches!(keys(&mut a, "a\n"), Some(Step::Stay)));
        assert_eq!(a.message, "a reason is required");
        assert!(matches!(keys(&mut a, "ok\nsoon\n"), Some(Step::Stay)));
        assert!(
            a.message.contains("'soon' is not a duration"),
            "{}",
            a.message
        );
        for _ in 0..4 {
            on_key(&mut a, KeyCode::Backspace, KeyModifiers::NONE);
        }
        match keys(&mut a, "1h\n") {
            Some(Step::Decide {
                verdict: Verdict::Approved,
                reason,
                expires,
                content: None,
            }) => {
                assert_eq!((reason.as_str(), expires.as_deref()), ("ok", Some("1h")));
            }
            _ => panic!("no decision"),
        }
    }

    #[test]
    fn gitleaks_allow_is_never_modified_and_skips_expiry() {
        let mut a = app(ProposalTool::GitleaksAllow);
        assert!(matches!(keys(&mut a, "m"), Some(Step::Stay)));
        assert!(a.message.contains("modify is not offered"), "{}", a.message);
        assert!(matches!(
            keys(&mut a, "a fixture\n"),
            Some(Step::Decide {
                verdict: Verdict::Approved,
                expires: None,
                ..
            })
        ));
        assert!(matches!(
            keys(&mut a, "rno\n"),
            Some(Step::Decide {
                verdict: Verdict::Rejected,
                ..
            })
        ));
    }

    /// A justification that draws a fake "Approving grants" box and a fake diff, then pushes
    /// them off screen with blank lines and escape sequences: on a 100x30 terminal the runner's
    /// reach and diff are on screen, the agent's text only as quoted, neutralised lines.
    #[test]
    fn a_hostile_justification_cannot_hide_the_real_request() {
        let mut a = app(ProposalTool::EgressBlock);
        a.proposals[0].spec.justification = format!(
            "\x1b[2J\x1b[H┌──────────────┐\nApproving grants\n  • nothing new: harmless docs only\nDiff against the live routes\n+ host: docs.example.test\n{}",
            "\n".repeat(200)
        );
        a.proposals[0].status = Some(bb_crds::proposal::ProposalStatus {
            reach: vec![
                "new host paste.example.test on port(s) 443: any path, any method".into(),
                "paste.example.test: outbound secret scanning turned off".into(),
            ],
            diff: Some("@@ new route paste.example.test @@\n+ host: paste.example.test\n".into()),
            ..Default::default()
        });
        let backend = ratatui::backend::TestBackend::new(100, 30);
        let mut term = ratatui::Terminal::new(backend).expect("terminal");
        term.draw(|f| view::draw(f, &a)).expect("draw");
        let screen: Vec<String> = term
            .backend()
            .buffer()
            .content()
            .chunks(100)
            .map(|row| row.iter().map(|c| c.symbol()).collect())
            .collect();
        let text = screen.join("\n");
        assert!(text.contains("new host paste.example.test"), "{text}");
        assert!(
            text.contains("outbound secret scanning turned off"),
            "{text}"
        );
        assert!(text.contains("+ host: paste.example.test"), "{text}");
        // The first "Approving grants" on screen is the view's own, above the real reach.
        let real = text.find("Approving grants").expect("header");
        assert!(
            real < text.find("paste.example.test").unwrap_or(0),
            "{text}"
        );
        for fake in ["nothing new: harmless", "docs.example.test"] {
            for line in screen.iter().filter(|l| l.contains(fake)) {
                assert!(line.contains("> "), "unquoted agent text: {line}\n{text}");
            }
        }
        let headers: Vec<&String> = screen
            .iter()
            .filter(|l| l.contains("Approving grants"))
            .collect();
        assert_eq!(headers.len(), 2, "{text}");
        assert!(
            headers[1].contains("> ") && !headers[0].contains("> "),
            "{text}"
        );
        // The escape sequence and the drawn box arrive as visible, inert characters.
        assert!(
            !text.contains('\x1b') && text.contains("> ␛[2J␛[H################"),
            "{text}"
        );
    }
}
