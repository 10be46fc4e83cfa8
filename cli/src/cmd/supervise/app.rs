//! The state `bbctl supervise` shows and edits: the pending Proposals, the selection, and what
//! the footer is asking for. The view draws it; the loop in mod.rs changes it.

use bb_crds::Proposal;

/// What the footer is asking for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Prompt {
    ApproveReason {
        content: Option<String>,
    },
    ApproveExpiry {
        reason: String,
        content: Option<String>,
    },
    RejectReason,
}

/// The UI's state: what is listed, what is selected, what is being typed.
#[derive(Debug)]
pub(super) struct App {
    pub(super) proposals: Vec<Proposal>,
    pub(super) selected: usize,
    pub(super) prompt: Option<(Prompt, String)>,
    pub(super) message: String,
    pub(super) color: bool,
    pub(super) all_namespaces: bool,
    /// Lines the detail pane is scrolled down by (the selected proposal's).
    pub(super) scroll: u16,
}

impl App {
    pub(super) fn current(&self) -> Option<&Proposal> {
        self.proposals.get(self.selected)
    }

    pub(super) fn set(&mut self, proposals: Vec<Proposal>) {
        // Keep the selection on the same proposal when others come and go.
        let keep = self.current().and_then(|p| p.metadata.uid.clone());
        self.proposals = proposals;
        self.selected = keep
            .and_then(|u| {
                self.proposals
                    .iter()
                    .position(|p| p.metadata.uid.as_deref() == Some(u.as_str()))
            })
            .unwrap_or(self.selected.min(self.proposals.len().saturating_sub(1)));
    }
}
