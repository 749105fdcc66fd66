//! The deliveries the relay holds (on the wire, or waiting for their rate limit or a request
//! slot), one task each, and when the dispatcher should claim more.

use crate::shutdown::Shutdown;
use crate::state::RelayState;
use rustc_hash::FxHashMap as HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// How many deliveries the relay may hold, and the smallest claim worth a round trip.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// `--concurrency + --batch-size`: the requests on the wire and a batch claimed ahead.
    pub capacity: usize,
    /// Claims smaller than this wait for more room, so that a busy relay makes few, large
    /// round trips instead of one per finished delivery.
    pub worthwhile: usize,
}

/// The held deliveries, by task, so that whatever is cut off at shutdown can be handed back.
pub struct InFlight {
    pub tasks: JoinSet<()>,
    pub deliveries: HashMap<tokio::task::Id, i64>,
    state: Arc<RelayState>,
}

impl InFlight {
    pub fn new(state: Arc<RelayState>) -> InFlight {
        InFlight {
            tasks: JoinSet::new(),
            deliveries: HashMap::default(),
            state,
        }
    }

    /// Start delivering `delivery_id`.
    pub fn spawn(&mut self, delivery_id: i64, task: impl Future<Output = ()> + Send + 'static) {
        let handle = self.tasks.spawn(task);
        self.deliveries.insert(handle.id(), delivery_id);
        self.state.set_in_flight(self.tasks.len());
    }

    /// What more the relay may claim.
    pub fn room(&self, pace: Pace) -> usize {
        pace.capacity.saturating_sub(self.tasks.len())
    }

    /// Wait for one task to finish, and forget its delivery; `None` once none is held.
    pub async fn next_done(&mut self) -> Option<()> {
        let done = self.tasks.join_next_with_id().await?;
        let id = match done {
            Ok((id, ())) => id,
            Err(e) => {
                if e.is_panic() {
                    tracing::error!(error = %e, "a delivery task panicked; its lease will bring the delivery back");
                }
                e.id()
            }
        };
        self.deliveries.remove(&id);
        self.state.set_in_flight(self.tasks.len());
        Some(())
    }

    /// Wait for a reason to claim again: a notification; or, once `poll` has passed (at once
    /// while `backlog` says the last claim was cut short by room), room for a worthwhile claim.
    /// The poll's deadline is set once: were it restarted whenever a task finished, a busy
    /// relay would not reach it before every delivery it held was done, and would idle while
    /// the queue still had work.
    pub async fn wait_to_claim(
        &mut self,
        pace: Pace,
        backlog: bool,
        poll: Duration,
        wake: &Notify,
        shutdown: &mut Shutdown,
    ) {
        let poll = tokio::time::sleep(poll);
        tokio::pin!(poll);
        let mut poll_due = false;
        loop {
            tokio::select! {
                _ = wake.notified() => return,
                _ = shutdown.requested() => return,
                _ = &mut poll, if !poll_due => poll_due = true,
                Some(()) = self.next_done() => {}
            }
            if (backlog || poll_due) && self.room(pace) >= pace.worthwhile {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks that finish one every `every`, the first after `every`.
    fn in_flight_finishing(n: u32, every: Duration) -> InFlight {
        let mut in_flight = InFlight::new(Arc::default());
        for i in 1..=n {
            in_flight.spawn(i64::from(i), async move {
                tokio::time::sleep(every * i).await;
            });
        }
        in_flight
    }

    /// How long `wait_to_claim` waits (in paused, virtual time), and the room it leaves.
    async fn wait(
        in_flight: &mut InFlight,
        (capacity, worthwhile): (usize, usize),
        backlog: bool,
        poll: Duration,
        wake: &Notify,
    ) -> (Duration, usize) {
        let pace = Pace {
            capacity,
            worthwhile,
        };
        let started = tokio::time::Instant::now();
        in_flight
            .wait_to_claim(pace, backlog, poll, wake, &mut Shutdown::never())
            .await;
        (started.elapsed(), in_flight.room(pace))
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_busy_relay_claims_again_once_the_poll_is_due_and_room_has_opened() {
        // 1,000 held deliveries finishing one per millisecond, a 2 ms poll, and claims worth
        // making from 10 free places: the next claim comes after about 10 ms, not after the
        // last delivery is done (1 s), although a task finishes before every poll would fire.
        let mut in_flight = in_flight_finishing(1000, MS);
        let (waited, room) = wait(&mut in_flight, (1000, 10), false, 2 * MS, &Notify::new()).await;
        assert!(waited <= 12 * MS, "waited {waited:?}");
        assert!(room >= 10);
    }

    #[tokio::test(start_paused = true)]
    async fn without_room_for_a_worthwhile_claim_the_poll_alone_is_not_enough() {
        let mut in_flight = in_flight_finishing(100, 10 * MS);
        let waited = wait(&mut in_flight, (100, 50), false, 2 * MS, &Notify::new()).await;
        assert_eq!(waited, (500 * MS, 50));
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_backlog_the_claim_does_not_wait_for_the_poll() {
        let mut in_flight = in_flight_finishing(10, MS);
        let waited = wait(&mut in_flight, (10, 1), true, 1000 * MS, &Notify::new()).await;
        assert_eq!(waited, (MS, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_relay_claims_when_the_poll_is_due_or_it_is_woken() {
        let mut in_flight = InFlight::new(Arc::default());
        let wake = Notify::new();
        let waited = wait(&mut in_flight, (10, 5), false, 1000 * MS, &wake).await;
        assert_eq!(waited, (1000 * MS, 10));
        wake.notify_one();
        let waited = wait(&mut in_flight, (10, 5), false, 1000 * MS, &wake).await;
        assert_eq!(waited, (Duration::ZERO, 10));
    }
}
