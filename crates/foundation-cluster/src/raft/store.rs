//! The group's storage: the log, the vote and the state machine, in memory.
//!
//! Nothing is written to disk. That is safe here because a node never comes back under
//! the same Raft identity: its id is derived from its name *and incarnation*
//! ([`super::node_id`]), so a restarted node joins as a new member, and the group replaces
//! the voter it lost (see `super::manager`). A group loses what it holds only if a
//! majority of its voters die before they are replaced.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StoredMembership, Vote,
};

use super::{Cfg, Machine};
use crate::node::locks::lock;

type NodeId = u64;

#[derive(Debug, Default)]
struct Log {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    entries: BTreeMap<u64, Entry<Cfg>>,
}

/// The log and the vote.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogStore {
    log: Arc<Mutex<Log>>,
}

impl RaftLogReader<Cfg> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Cfg>>, StorageError<NodeId>> {
        Ok(lock(&self.log)
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<Cfg> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<Cfg>, StorageError<NodeId>> {
        let log = lock(&self.log);
        let last = log
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(log.last_purged);
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        lock(&self.log).vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(lock(&self.log).vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        lock(&self.log).committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(lock(&self.log).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Cfg>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<Cfg>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut log = lock(&self.log);
            for entry in entries {
                log.entries.insert(entry.log_id.index, entry);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut log = lock(&self.log);
        let _ = log.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut log = lock(&self.log);
        let keep = log.entries.split_off(&(log_id.index + 1));
        log.entries = keep;
        log.last_purged = Some(log_id);
        Ok(())
    }
}

/// A snapshot kept for followers that need one.
#[derive(Debug, Clone)]
struct Stored {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

#[derive(Debug)]
struct State<S> {
    machine: S,
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
    snapshot: Option<Stored>,
    snapshots_built: u64,
}

/// The state machine: the application's [`Machine`], and what Raft needs beside it.
#[derive(Debug)]
pub(crate) struct MachineStore<S> {
    state: Arc<Mutex<State<S>>>,
}

impl<S> Clone for MachineStore<S> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<S: Machine> MachineStore<S> {
    pub(crate) fn new(machine: S) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                machine,
                applied: None,
                membership: StoredMembership::default(),
                snapshot: None,
                snapshots_built: 0,
            })),
        }
    }

    /// Reads the machine as it is now on this node.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&lock(&self.state).machine)
    }
}

impl<S: Machine> RaftSnapshotBuilder<Cfg> for MachineStore<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Cfg>, StorageError<NodeId>> {
        let mut st = lock(&self.state);
        st.snapshots_built += 1;
        let data = st.machine.snapshot();
        let snapshot_id = match st.applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, st.snapshots_built),
            None => format!("none-{}", st.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: st.applied,
            last_membership: st.membership.clone(),
            snapshot_id,
        };
        st.snapshot = Some(Stored {
            meta: meta.clone(),
            data: data.clone(),
        });
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<S: Machine> RaftStateMachine<Cfg> for MachineStore<S> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, openraft::BasicNode>,
        ),
        StorageError<NodeId>,
    > {
        let st = lock(&self.state);
        Ok((st.applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<u8>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<Cfg>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut st = lock(&self.state);
        let mut replies = Vec::new();
        for entry in entries {
            st.applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => replies.push(Vec::new()),
                EntryPayload::Normal(command) => replies.push(st.machine.apply(&command)),
                EntryPayload::Membership(m) => {
                    st.membership = StoredMembership::new(Some(entry.log_id), m);
                    replies.push(Vec::new());
                }
            }
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let mut st = lock(&self.state);
        st.machine.restore(&data);
        st.applied = meta.last_log_id;
        st.membership = meta.last_membership.clone();
        st.snapshot = Some(Stored {
            meta: meta.clone(),
            data,
        });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<Cfg>>, StorageError<NodeId>> {
        let st = lock(&self.state);
        Ok(st.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
