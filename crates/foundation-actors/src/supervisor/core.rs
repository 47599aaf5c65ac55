//! The supervisor actor: one core for static and dynamic supervisors.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use ractor::{ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::watch;
use tokio::time::Instant;

use super::spec::{Backoff, ChildEntry, ChildKind, Intensity, Restart, Shutdown, Strategy};
use super::{ChildCounts, ChildInfo, ChildStatus, Supervisor, SupervisorMsg};
use crate::addr::{Envelope, ReplyPort};
use crate::error::{ExitReason, SpawnError, SupervisorError, SupervisorExit};

/// What a supervisor is started with; cloned for each of its own restarts.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) id: String,
    pub(crate) strategy: Strategy,
    pub(crate) intensity: Intensity,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) max_children: Option<usize>,
    pub(crate) dynamic: bool,
    pub(crate) children: Vec<ChildEntry>,
    /// Where the supervisor's exit reason is published, for [`Supervisor::wait`].
    pub(crate) exit: Arc<watch::Sender<Option<ExitReason>>>,
}

pub(crate) struct Core;

struct Child {
    entry: ChildEntry,
    cell: Option<ActorCell>,
    status: ChildStatus,
    restarts: u64,
    consecutive: u32,
    last_restart: Option<Instant>,
}

pub(crate) struct State {
    cfg: Config,
    children: Vec<Child>,
    /// The children's ids, so a start checks for a duplicate without a scan.
    ids: HashSet<String>,
    restarts: VecDeque<Instant>,
    /// Bumped for each restart that is scheduled, so a stale delayed restart is ignored.
    epoch: u64,
}

/// A supervisor's strategy and its children, with handles of those that are supervisors.
pub(crate) type Subtree = (Strategy, Vec<(ChildInfo, Option<Supervisor>)>);

/// Internal requests, wrapped by the public `SupervisorMsg`.
pub(crate) enum Request {
    StartChild(ChildEntry, ReplyPort<Result<(), SpawnError>>),
    TerminateChild(String, ReplyPort<Result<(), SupervisorError>>),
    RestartChild(String, ReplyPort<Result<(), SupervisorError>>),
    DeleteChild(String, ReplyPort<Result<(), SupervisorError>>),
    WhichChildren(ReplyPort<Vec<ChildInfo>>),
    CountChildren(ReplyPort<ChildCounts>),
    Subtree(ReplyPort<Subtree>),
    /// A restart whose backoff delay has run out.
    DelayedRestart {
        ids: Vec<String>,
        epoch: u64,
    },
}

fn reason_str(r: &ExitReason) -> String {
    r.to_string()
}

impl State {
    fn info(&self, c: &Child) -> ChildInfo {
        ChildInfo {
            id: c.entry.id.clone(),
            name: c.entry.name.clone(),
            kind: c.entry.kind,
            restart: c.entry.restart,
            status: c.status.clone(),
            restarts: c.restarts,
            incarnation: c.entry.child.incarnation(),
            actor_id: c.cell.as_ref().map(|c| c.get_id().to_string()),
        }
    }

    fn position_by_cell(&self, id: ractor::ActorId) -> Option<usize> {
        self.children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|cell| cell.get_id() == id))
    }

    /// Removes a child from the supervisor and its name from the registry.
    fn forget(&mut self, idx: usize) -> Child {
        let c = self.children.remove(idx);
        self.ids.remove(&c.entry.id);
        if let Some(name) = &c.entry.name {
            c.entry.child.unregister(name);
        }
        c
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| c.entry.id == id)
    }

    async fn start_child(&mut self, idx: usize, sup: &ActorCell) -> Result<(), SpawnError> {
        let c = &mut self.children[idx];
        let cell = c.entry.child.start(&c.entry.id, sup.clone()).await?;
        c.cell = Some(cell);
        c.status = ChildStatus::Running;
        Ok(())
    }

    /// Shuts one child down by its policy. Its exit event, when it arrives, matches no
    /// live child and is ignored.
    async fn shutdown_child(&mut self, idx: usize) {
        let c = &mut self.children[idx];
        let Some(cell) = c.cell.take() else { return };
        match c.entry.shutdown {
            Shutdown::Brutal => {
                let _ = cell.kill_and_wait(None).await;
            }
            Shutdown::Timeout(d) => {
                if let Err(ractor::RactorErr::Timeout) =
                    cell.stop_and_wait(Some("shutdown".into()), Some(d)).await
                {
                    tracing::warn!(child = %c.entry.id, timeout = ?d, "child did not stop within its shutdown timeout; killing it");
                    let _ = cell.kill_and_wait(None).await;
                }
            }
            Shutdown::Infinity => {
                let _ = cell.stop_and_wait(Some("shutdown".into()), None).await;
            }
        }
    }

    /// Shuts every child down, last started first, and marks them stopped for good.
    async fn shutdown_all(&mut self) {
        for idx in (0..self.children.len()).rev() {
            self.shutdown_child(idx).await;
            let c = &mut self.children[idx];
            c.entry.child.mark_stopped();
            c.status = ChildStatus::Terminated;
        }
    }

    /// Records a restart; false if it exceeds the intensity.
    fn note_restart(&mut self, now: Instant) -> bool {
        let period = self.cfg.intensity.period;
        self.restarts.push_back(now);
        while self
            .restarts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > period)
        {
            self.restarts.pop_front();
        }
        self.restarts.len() <= self.cfg.intensity.max_restarts as usize
    }

    /// Gives up: shuts every child down and returns the exit its parent will see.
    async fn escalate(&mut self, child: &str, last_exit: ExitReason) -> ActorProcessingErr {
        let exit = SupervisorExit {
            supervisor: self.cfg.id.clone(),
            child: child.to_owned(),
            max_restarts: self.cfg.intensity.max_restarts,
            period: self.cfg.intensity.period,
            last_exit,
        };
        self.shutdown_all().await;
        self.cfg
            .exit
            .send_replace(Some(ExitReason::Escalated(Arc::new(exit.clone()))));
        Box::new(exit)
    }

    async fn child_exited(
        &mut self,
        myself: &ActorRef<Envelope<SupervisorMsg>>,
        actor: ractor::ActorId,
        reason: ExitReason,
    ) -> Result<(), ActorProcessingErr> {
        let Some(idx) = self.position_by_cell(actor) else {
            return Ok(());
        };
        let c = &mut self.children[idx];
        c.cell = None;
        let id = c.entry.id.clone();
        let restart = match c.entry.restart {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_normal(),
            Restart::Temporary => false,
        };
        if !restart {
            tracing::debug!(supervisor = %self.cfg.id, child = %id, reason = %reason, "child exited; not restarting it");
            c.entry.child.mark_stopped();
            if c.entry.restart == Restart::Temporary || self.cfg.dynamic {
                self.forget(idx);
            } else {
                c.status = ChildStatus::Exited(reason_str(&reason));
            }
            return Ok(());
        }
        c.entry.child.mark_restarting();
        c.status = ChildStatus::Restarting;
        let now = Instant::now();
        if !self.note_restart(now) {
            tracing::error!(supervisor = %self.cfg.id, child = %id, reason = %reason, "restart intensity exceeded; shutting down");
            return Err(self.escalate(&id, reason).await);
        }
        tracing::info!(supervisor = %self.cfg.id, child = %id, reason = %reason, "restarting child");

        // Which children go down with it, and come back in start order.
        let range = match self.cfg.strategy {
            Strategy::OneForOne => idx..idx + 1,
            Strategy::OneForAll => 0..self.children.len(),
            Strategy::RestForOne => idx..self.children.len(),
        };
        for i in range.clone().rev() {
            if i != idx {
                self.children[i].entry.child.mark_restarting();
                self.shutdown_child(i).await;
                self.children[i].status = ChildStatus::Restarting;
            }
        }
        let ids: Vec<String> = self.children[range]
            .iter()
            .map(|c| c.entry.id.clone())
            .collect();

        let delay = self.cfg.backoff.map(|b| {
            let c = &mut self.children[idx];
            if c.last_restart
                .is_some_and(|t| now.saturating_duration_since(t) > b.max)
            {
                c.consecutive = 0;
            }
            let d = b.delay(c.consecutive);
            c.consecutive = c.consecutive.saturating_add(1);
            d
        });
        self.children[idx].last_restart = Some(now);
        self.epoch += 1;
        match delay {
            Some(d) if !d.is_zero() => {
                let me = myself.clone();
                let epoch = self.epoch;
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    // If the supervisor has gone, nothing is left to restart.
                    let _ = me.send_message(Envelope {
                        ctx: None,
                        msg: SupervisorMsg(Request::DelayedRestart { ids, epoch }),
                    });
                });
                Ok(())
            }
            _ => self.restart_ids(myself, &ids).await,
        }
    }

    /// Starts the named children again, in order. A child whose start fails counts as
    /// another restart; past the intensity the supervisor gives up.
    async fn restart_ids(
        &mut self,
        myself: &ActorRef<Envelope<SupervisorMsg>>,
        ids: &[String],
    ) -> Result<(), ActorProcessingErr> {
        let sup = myself.get_cell();
        for id in ids {
            let Some(idx) = self.position(id) else {
                continue;
            };
            if self.children[idx].cell.is_some() {
                continue;
            }
            loop {
                match self.start_child(idx, &sup).await {
                    Ok(()) => {
                        self.children[idx].restarts += 1;
                        break;
                    }
                    Err(e) => {
                        let reason = match e {
                            SpawnError::Init { reason, .. } => reason,
                            other => ExitReason::Failed(Arc::new(other)),
                        };
                        tracing::warn!(supervisor = %self.cfg.id, child = %id, reason = %reason, "restart failed");
                        if !self.note_restart(Instant::now()) {
                            return Err(self.escalate(id, reason).await);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        myself: &ActorRef<Envelope<SupervisorMsg>>,
        req: Request,
    ) -> Result<(), ActorProcessingErr> {
        match req {
            Request::StartChild(entry, reply) => {
                let r = self.add_child(entry, &myself.get_cell()).await;
                let _ = reply.send(r);
            }
            Request::TerminateChild(id, reply) => {
                let r = match self.position(&id) {
                    None => Err(SupervisorError::UnknownChild(id)),
                    Some(idx) => {
                        self.shutdown_child(idx).await;
                        let c = &mut self.children[idx];
                        c.entry.child.mark_stopped();
                        c.status = ChildStatus::Terminated;
                        if self.cfg.dynamic || c.entry.restart == Restart::Temporary {
                            self.forget(idx);
                        }
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            Request::RestartChild(id, reply) => {
                let r = match self.position(&id) {
                    None => Err(SupervisorError::UnknownChild(id)),
                    Some(idx) if self.children[idx].cell.is_some() => Ok(()),
                    Some(idx) => self
                        .start_child(idx, &myself.get_cell())
                        .await
                        .map_err(SupervisorError::from),
                };
                let _ = reply.send(r);
            }
            Request::DeleteChild(id, reply) => {
                let r = match self.position(&id) {
                    None => Err(SupervisorError::UnknownChild(id)),
                    Some(idx) if self.children[idx].cell.is_some() => {
                        Err(SupervisorError::Running(id))
                    }
                    Some(idx) => {
                        self.forget(idx);
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            Request::WhichChildren(reply) => {
                let _ = reply.send(self.children.iter().map(|c| self.info(c)).collect());
            }
            Request::CountChildren(reply) => {
                let mut n = ChildCounts::default();
                for c in &self.children {
                    n.specs += 1;
                    n.active += usize::from(c.cell.is_some());
                    match c.entry.kind {
                        ChildKind::Worker => n.workers += 1,
                        ChildKind::Supervisor => n.supervisors += 1,
                    }
                }
                let _ = reply.send(n);
            }
            Request::Subtree(reply) => {
                let kids = self
                    .children
                    .iter()
                    .map(|c| (self.info(c), c.entry.child.as_supervisor()))
                    .collect();
                let _ = reply.send((self.cfg.strategy, kids));
            }
            Request::DelayedRestart { ids, epoch } => {
                if epoch == self.epoch {
                    return self.restart_ids(myself, &ids).await;
                }
                // A later restart superseded this one; restart anything still down.
                let down: Vec<String> = self
                    .children
                    .iter()
                    .filter(|c| c.status == ChildStatus::Restarting && c.cell.is_none())
                    .map(|c| c.entry.id.clone())
                    .filter(|id| ids.contains(id))
                    .collect();
                return self.restart_ids(myself, &down).await;
            }
        }
        Ok(())
    }

    async fn add_child(&mut self, entry: ChildEntry, sup: &ActorCell) -> Result<(), SpawnError> {
        if self.ids.contains(&entry.id) {
            return Err(SpawnError::DuplicateId(entry.id));
        }
        if let Some(max) = self.cfg.max_children {
            if self.children.len() >= max {
                return Err(SpawnError::MaxChildren(max));
            }
        }
        if let Some(name) = &entry.name {
            entry.child.register(name)?;
        }
        self.ids.insert(entry.id.clone());
        self.children.push(Child {
            entry,
            cell: None,
            status: ChildStatus::Restarting,
            restarts: 0,
            consecutive: 0,
            last_restart: None,
        });
        let idx = self.children.len() - 1;
        if let Err(e) = self.start_child(idx, sup).await {
            self.forget(idx).entry.child.mark_stopped();
            return Err(e);
        }
        Ok(())
    }
}

impl ractor::Actor for Core {
    type Msg = Envelope<SupervisorMsg>;
    type State = State;
    type Arguments = Config;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        cfg: Config,
    ) -> Result<State, ActorProcessingErr> {
        cfg.exit.send_replace(None);
        let entries = cfg.children.clone();
        let mut state = State {
            cfg,
            children: Vec::new(),
            ids: HashSet::new(),
            restarts: VecDeque::new(),
            epoch: 0,
        };
        let sup = myself.get_cell();
        for entry in entries {
            let child = entry.id.clone();
            if let Err(e) = state.add_child(entry, &sup).await {
                state.shutdown_all().await;
                return Err(Box::new(SpawnError::Child {
                    supervisor: state.cfg.id.clone(),
                    child,
                    source: Box::new(e),
                }));
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        env: Envelope<SupervisorMsg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        state.handle(&myself, env.msg.0).await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                state
                    .child_exited(&myself, cell.get_id(), ExitReason::from_failure(err))
                    .await
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                state
                    .child_exited(&myself, cell.get_id(), ExitReason::from_termination(reason))
                    .await
            }
            _ => Ok(()),
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        state.shutdown_all().await;
        state.cfg.exit.send_replace(Some(ExitReason::Normal(None)));
        Ok(())
    }
}
