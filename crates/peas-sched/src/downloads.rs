//! Many content items at once: intents, resource hints and node groups, IO-less.
//!
//! Ideas taken from the earlier iroh downloader designs: several *intents* (waiters) share one
//! download and cancelling one keeps the others; *resource hints* say which peers may have a
//! content item; *node groups* label content and peers, and a peer that joins group G is tried
//! for every pending content item of G.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::PeerId;

/// Identifies a content item (e.g. one blob); chosen by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId(pub u64);

/// Identifies a node group (e.g. a cluster or a tenant); chosen by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u64);

/// One waiter's interest in a content item; chosen by [`Downloads`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IntentId(pub u64);

/// How an intent ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntentOutcome {
    /// The content is complete locally.
    Completed,
    /// The download failed for good.
    Failed,
}

/// What [`Downloads`] wants the shell to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadAction {
    /// Start downloading `content` (create its [`crate::Planner`]).
    Start {
        /// The content to fetch.
        content: ContentId,
    },
    /// Connect `peer` to the download of `content` (it may have it: hint or shared group).
    TryPeer {
        /// The content.
        content: ContentId,
        /// The peer to try.
        peer: PeerId,
    },
    /// No intent is left: stop the download of `content` (verified data stays in the store).
    Stop {
        /// The content.
        content: ContentId,
    },
    /// Tell the waiter of `intent` how it ended.
    Notify {
        /// The intent.
        intent: IntentId,
        /// Its outcome.
        outcome: IntentOutcome,
    },
}

#[derive(Debug, Default)]
struct Content {
    intents: BTreeSet<IntentId>,
    hinted: BTreeSet<PeerId>,
    groups: BTreeSet<GroupId>,
    tried: BTreeSet<PeerId>,
    running: bool,
}

/// The download manager over many content items: pure state, actions out via
/// [`Downloads::poll_action`].
///
/// Invariants: a content item is running iff it has at least one intent and is not finished;
/// every intent gets exactly one [`DownloadAction::Notify`] unless it is cancelled; a peer is
/// proposed ([`DownloadAction::TryPeer`]) at most once per running content item.
#[derive(Debug, Default)]
pub struct Downloads {
    contents: BTreeMap<ContentId, Content>,
    intents: BTreeMap<IntentId, ContentId>,
    peer_groups: BTreeMap<GroupId, BTreeSet<PeerId>>,
    next_intent: u64,
    actions: VecDeque<DownloadAction>,
}

impl Downloads {
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers interest in `content`. The first intent starts the download
    /// ([`DownloadAction::Start`]) and proposes every hinted or group peer known so far.
    pub fn add_intent(&mut self, content: ContentId) -> IntentId {
        let id = IntentId(self.next_intent);
        self.next_intent += 1;
        self.intents.insert(id, content);
        let c = self.contents.entry(content).or_default();
        c.intents.insert(id);
        if !c.running {
            c.running = true;
            c.tried.clear();
            self.actions.push_back(DownloadAction::Start { content });
            self.propose_all(content);
        }
        id
    }

    /// Withdraws one intent. The download goes on while other intents remain; the last one
    /// stops it ([`DownloadAction::Stop`]). Unknown ids are ignored.
    pub fn cancel_intent(&mut self, intent: IntentId) {
        let Some(content) = self.intents.remove(&intent) else {
            return;
        };
        if let Some(c) = self.contents.get_mut(&content) {
            c.intents.remove(&intent);
            if c.intents.is_empty() && c.running {
                c.running = false;
                self.actions.push_back(DownloadAction::Stop { content });
            }
        }
    }

    /// Resource hint: `peer` may have `content`. Proposed at once if the download runs.
    pub fn add_hint(&mut self, content: ContentId, peer: PeerId) {
        let c = self.contents.entry(content).or_default();
        c.hinted.insert(peer);
        if c.running && c.tried.insert(peer) {
            self.actions
                .push_back(DownloadAction::TryPeer { content, peer });
        }
    }

    /// Labels `content` with `group`: every peer of the group is a candidate for it.
    pub fn add_content_group(&mut self, content: ContentId, group: GroupId) {
        self.contents
            .entry(content)
            .or_default()
            .groups
            .insert(group);
        let running = self.contents.get(&content).is_some_and(|c| c.running);
        if running {
            self.propose_all(content);
        }
    }

    /// `peer` joined `group`: it is tried for every running content item of that group.
    pub fn handle_peer_joined_group(&mut self, peer: PeerId, group: GroupId) {
        self.peer_groups.entry(group).or_default().insert(peer);
        for (content, c) in self.contents.iter_mut() {
            if c.running && c.groups.contains(&group) && c.tried.insert(peer) {
                self.actions.push_back(DownloadAction::TryPeer {
                    content: *content,
                    peer,
                });
            }
        }
    }

    /// `peer` left `group` (already proposed downloads are not withdrawn).
    pub fn handle_peer_left_group(&mut self, peer: PeerId, group: GroupId) {
        if let Some(s) = self.peer_groups.get_mut(&group) {
            s.remove(&peer);
        }
    }

    /// The download of `content` completed: every intent is notified and forgotten.
    pub fn handle_content_done(&mut self, content: ContentId) {
        self.finish(content, IntentOutcome::Completed);
    }

    /// The download of `content` failed for good: every intent is notified and forgotten.
    pub fn handle_content_failed(&mut self, content: ContentId) {
        self.finish(content, IntentOutcome::Failed);
    }

    /// Number of intents still waiting for `content`.
    pub fn intent_count(&self, content: ContentId) -> usize {
        self.contents.get(&content).map_or(0, |c| c.intents.len())
    }

    /// Whether the download of `content` runs.
    pub fn is_running(&self, content: ContentId) -> bool {
        self.contents.get(&content).is_some_and(|c| c.running)
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<DownloadAction> {
        self.actions.pop_front()
    }

    fn finish(&mut self, content: ContentId, outcome: IntentOutcome) {
        let Some(c) = self.contents.get_mut(&content) else {
            return;
        };
        c.running = false;
        let intents = std::mem::take(&mut c.intents);
        for intent in intents {
            self.intents.remove(&intent);
            self.actions
                .push_back(DownloadAction::Notify { intent, outcome });
        }
    }

    fn propose_all(&mut self, content: ContentId) {
        let Some(c) = self.contents.get_mut(&content) else {
            return;
        };
        let mut peers: BTreeSet<PeerId> = c.hinted.clone();
        for g in &c.groups {
            if let Some(ps) = self.peer_groups.get(g) {
                peers.extend(ps.iter().copied());
            }
        }
        for peer in peers {
            if c.tried.insert(peer) {
                self.actions
                    .push_back(DownloadAction::TryPeer { content, peer });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(d: &mut Downloads) -> Vec<DownloadAction> {
        std::iter::from_fn(|| d.poll_action()).collect()
    }

    #[test]
    fn intents_share_one_download_and_cancel_keeps_others() {
        let mut d = Downloads::new();
        let c = ContentId(1);
        let a = d.add_intent(c);
        let b = d.add_intent(c);
        assert_eq!(drain(&mut d), vec![DownloadAction::Start { content: c }]);
        d.cancel_intent(a);
        assert!(drain(&mut d).is_empty());
        assert!(d.is_running(c));
        assert_eq!(d.intent_count(c), 1);
        d.handle_content_done(c);
        assert_eq!(
            drain(&mut d),
            vec![DownloadAction::Notify {
                intent: b,
                outcome: IntentOutcome::Completed
            }]
        );
        assert!(!d.is_running(c));
    }

    #[test]
    fn last_cancel_stops() {
        let mut d = Downloads::new();
        let c = ContentId(7);
        let a = d.add_intent(c);
        drain(&mut d);
        d.cancel_intent(a);
        assert_eq!(drain(&mut d), vec![DownloadAction::Stop { content: c }]);
        d.cancel_intent(a);
        assert!(drain(&mut d).is_empty());
    }

    #[test]
    fn hints_are_proposed_once() {
        let mut d = Downloads::new();
        let c = ContentId(1);
        d.add_hint(c, PeerId(5));
        d.add_intent(c);
        d.add_hint(c, PeerId(5));
        d.add_hint(c, PeerId(6));
        assert_eq!(
            drain(&mut d),
            vec![
                DownloadAction::Start { content: c },
                DownloadAction::TryPeer {
                    content: c,
                    peer: PeerId(5)
                },
                DownloadAction::TryPeer {
                    content: c,
                    peer: PeerId(6)
                },
            ]
        );
    }

    #[test]
    fn group_join_tries_all_pending_content_of_the_group() {
        let mut d = Downloads::new();
        let g = GroupId(3);
        let (c1, c2, c3) = (ContentId(1), ContentId(2), ContentId(3));
        for c in [c1, c2, c3] {
            d.add_intent(c);
        }
        d.add_content_group(c1, g);
        d.add_content_group(c2, g);
        d.handle_content_done(c2);
        drain(&mut d);
        d.handle_peer_joined_group(PeerId(9), g);
        assert_eq!(
            drain(&mut d),
            vec![DownloadAction::TryPeer {
                content: c1,
                peer: PeerId(9)
            }]
        );
        // A content labelled later picks up the group's peers at once.
        d.add_content_group(c3, g);
        assert_eq!(
            drain(&mut d),
            vec![DownloadAction::TryPeer {
                content: c3,
                peer: PeerId(9)
            }]
        );
    }
}
