//! How `bbctl supervise` looks: the pending list, the selected proposal's detail (why, what it
//! would reach, the diff) and a footer with the keys or the question being asked.

use bb_crds::Proposal;
use bb_crds::proposal::ProposalTool;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph, Wrap};

use bb_crds::policy::untrusted::quoted;

use super::app::{App, Prompt};

/// One line of text the agent influenced (a diff of its routes), with control characters
/// shown as visible symbols: never an escape sequence on the approver's terminal.
fn visible(line: &str) -> String {
    quoted(line)
        .into_iter()
        .next()
        .map(|l| {
            l.trim_start_matches(bb_crds::policy::untrusted::QUOTE)
                .to_string()
        })
        .unwrap_or_default()
}

fn age(p: &Proposal) -> String {
    let Some(t) = p.metadata.creation_timestamp.as_ref() else {
        return "?".into();
    };
    let secs = jiff::Timestamp::now().duration_since(t.0).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

/// A style, or plain text when colour is off (`NO_COLOR`).
fn paint(app: &App, color: Color) -> Style {
    if app.color {
        Style::default().fg(color)
    } else {
        Style::default()
    }
}

fn detail(app: &App, p: &Proposal) -> Text<'static> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let st = p.status.clone().unwrap_or_default();
    let mut lines = vec![
        Line::from(vec![
            Span::styled("Proposal  ", bold),
            Span::raw(p.metadata.name.clone().unwrap_or_default()),
        ]),
        Line::from(vec![
            Span::styled("Agent     ", bold),
            Span::raw(format!(
                "{}/{}",
                p.metadata.namespace.clone().unwrap_or_default(),
                p.spec.agent_ref.name
            )),
        ]),
        Line::from(vec![
            Span::styled("Tool      ", bold),
            Span::raw(p.spec.tool.as_str().to_string()),
        ]),
    ];
    if let Some(r) = &p.spec.repo {
        lines.push(Line::from(vec![
            Span::styled("Repo      ", bold),
            Span::raw(r.clone()),
        ]));
    }
    // What approving grants, computed by the runner, comes first; the agent's own words come
    // last, quoted and neutralised, so nothing it writes can draw over or push away the truth.
    lines.push(Line::default());
    lines.push(Line::styled("Approving grants", bold));
    if st.reach.is_empty() {
        lines.push(Line::raw("  (not summarised yet)"));
    }
    for r in &st.reach {
        lines.push(Line::styled(
            format!("  • {}", visible(r)),
            paint(app, Color::Yellow),
        ));
    }
    lines.push(Line::default());
    let (title, body) = match (&st.diff, p.spec.tool) {
        (Some(d), t) if t.is_egress() => ("Diff against the live routes", d.clone()),
        (_, ProposalTool::CapabilityBlock) => ("Proposed Dockerfile", p.spec.content.clone()),
        (_, ProposalTool::GitleaksAllow) => ("Findings", p.spec.content.clone()),
        _ => ("Proposed routes", p.spec.content.clone()),
    };
    lines.push(Line::styled(title, bold));
    for l in body.lines() {
        let style = match l.chars().next() {
            Some('+') => paint(app, Color::Green),
            Some('-') => paint(app, Color::Red),
            Some('@') => paint(app, Color::Cyan),
            _ => Style::default(),
        };
        lines.push(Line::styled(format!("  {}", visible(l)), style));
    }
    lines.push(Line::default());
    lines.push(Line::styled("Why (the agent's words, quoted)", bold));
    for l in quoted(&p.spec.justification) {
        lines.push(Line::styled(format!("  {l}"), paint(app, Color::DarkGray)));
    }
    Text::from(lines)
}

fn footer(app: &App) -> Text<'static> {
    let keys = match (&app.prompt, app.current().map(|p| p.spec.tool)) {
        (Some((prompt, buffer)), _) => {
            let q = match prompt {
                Prompt::ApproveReason { content: Some(_) } => {
                    "Approve the modified proposal. Reason"
                }
                Prompt::ApproveReason { content: None } => "Approve. Reason",
                Prompt::ApproveExpiry { .. } => "Expires after (90s, 30m, 8h, 7d; empty: never)",
                Prompt::RejectReason => "Reject. Reason",
            };
            format!("{q}: {buffer}█   (Enter confirms, Esc cancels)")
        }
        (None, Some(ProposalTool::GitleaksAllow)) => {
            "↑↓ select   PgUp/PgDn scroll   a approve   r reject   q quit".into()
        }
        (None, Some(_)) => {
            "↑↓ select   PgUp/PgDn scroll   a approve   m modify in $EDITOR, then approve   r reject   q quit".into()
        }
        (None, None) => "q quit".into(),
    };
    Text::from(vec![
        Line::styled(
            app.message.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Line::raw(keys),
    ])
}

pub(super) fn draw(f: &mut Frame, app: &App) {
    let [main, foot] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(4)]).areas(f.area());
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(38), Constraint::Percentage(62)]).areas(main);
    let items: Vec<ListItem> = app
        .proposals
        .iter()
        .map(|p| {
            let agent = if app.all_namespaces {
                format!(
                    "{}/{}",
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.spec.agent_ref.name
                )
            } else {
                p.spec.agent_ref.name.clone()
            };
            ListItem::new(format!("{agent}  {}  {}", p.spec.tool.as_str(), age(p)))
        })
        .collect();
    let title = format!(" Pending proposals ({}) ", app.proposals.len());
    if items.is_empty() {
        f.render_widget(
            Paragraph::new("No pending proposals. Waiting for agents to ask…")
                .block(Block::bordered().title(title)),
            left,
        );
    } else {
        let list = List::new(items)
            .block(Block::bordered().title(title))
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
            .highlight_symbol("> ");
        let mut state = ListState::default().with_selected(Some(app.selected));
        f.render_stateful_widget(list, left, &mut state);
    }
    let body = app.current().map(|p| detail(app, p)).unwrap_or_default();
    f.render_widget(
        Paragraph::new(body)
            .wrap(Wrap { trim: false })
            .scroll((app.scroll, 0))
            .block(Block::bordered().title(" Proposal ")),
        right,
    );
    f.render_widget(Paragraph::new(footer(app)).block(Block::bordered()), foot);
}
