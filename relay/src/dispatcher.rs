//! The producer: claims due deliveries when woken (notification, poll, or room freed while a
//! backlog remains) and starts one executor task per delivery. It holds up to `concurrency +
//! batch_size` deliveries: the requests on the wire (the executor's slots) and a batch claimed
//! ahead, so that claims stay large however few requests are in flight.

use crate::config_changes::ConfigChanges;
use crate::db::Database;
use crate::deliver::{Executor, Report};
use crate::delivery::{self, Release};
use crate::in_flight::{InFlight, Pace};
use crate::limits::EndpointLimits;
use crate::shutdown::Shutdown;
use crate::state::RelayState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

pub struct Dispatcher {
    pub db: Arc<Database>,
    pub executor: Arc<Executor>,
    pub limits: EndpointLimits,
    pub config_changes: Arc<ConfigChanges>,
    pub state: Arc<RelayState>,
    pub reports: mpsc::Sender<Report>,
    pub concurrency: u32,
    pub batch_size: u32,
    pub per_endpoint: u32,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub awake_poll_interval: Duration,
    pub stay_awake: Duration,
    pub max_reconnect_delay: Duration,
    pub shutdown_grace: Duration,
}

/// What one claiming round found.
struct Round {
    claimed: usize,
    /// The last claim was cut short by room, not by supply: more work may be due.
    backlog: bool,
}

impl Dispatcher {
    /// The dispatch loop. While there is traffic the relay is awake and claims every
    /// `awake_poll_interval`; after `stay_awake` without work it goes idle and waits for the
    /// watcher (`wakeup`) to notice new work, or for the backstop poll. Nothing it does asks
    /// writers to notify it.
    pub async fn run(self, wake: Arc<Notify>, mut shutdown: Shutdown) {
        let mut in_flight = InFlight::new(self.state.clone());
        let mut retry_delay = Duration::from_millis(100);
        let mut last_work = Instant::now();
        let mut noticed = self.state.work_noticed();
        while !shutdown.is_requested() {
            let round = match self.claim_while_due(&mut in_flight, &shutdown).await {
                Ok(round) => {
                    retry_delay = Duration::from_millis(100);
                    round
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?retry_delay, "claiming failed");
                    tokio::select! {
                        _ = tokio::time::sleep(retry_delay) => {}
                        _ = shutdown.requested() => break,
                    }
                    retry_delay = (retry_delay * 2).min(self.max_reconnect_delay);
                    continue;
                }
            };
            // New work noticed counts as work: a marker moves when an event is written, before
            // its transaction commits, so the relay stays awake (claiming every few
            // milliseconds) for the commit to come.
            let now_noticed = self.state.work_noticed();
            if round.claimed > 0 || !in_flight.tasks.is_empty() || now_noticed != noticed {
                last_work = Instant::now();
                noticed = now_noticed;
            }
            let idle = last_work.elapsed() >= self.stay_awake;
            if idle != self.state.is_idle() {
                tracing::debug!(idle, "idle state changed");
                self.state.set_idle(idle);
            }
            let pause = if idle {
                self.poll_interval
            } else {
                self.awake_poll_interval
            };
            in_flight
                .wait_to_claim(self.pace(), round.backlog, pause, &wake, &mut shutdown)
                .await;
            if idle {
                self.state.count_wakeup();
            }
        }
        self.state.set_idle(false);
        self.drain(in_flight).await;
    }

    /// Claim batches until the queue has no more due work or there is no room left.
    async fn claim_while_due(
        &self,
        in_flight: &mut InFlight,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Round> {
        let mut claimed_total = 0;
        loop {
            let room = in_flight.room(self.pace()).min(self.batch_size as usize);
            if room == 0 {
                return Ok(Round {
                    claimed: claimed_total,
                    backlog: true,
                });
            }
            // Before the claim: a change that commits while it is under way counts as after it.
            let config_epoch = self.config_changes.epoch();
            let rows = self
                .db
                .claim(
                    room as u32,
                    self.lease,
                    self.per_endpoint,
                    &self.limits.busy(),
                )
                .await?;
            let claimed = delivery::from_claim(rows, config_epoch)?;
            let full = claimed.len() == room;
            claimed_total += claimed.len();
            for job in claimed {
                let gate = self.limits.hold(job.endpoint_id, job.endpoint.rate_limit);
                let delivery_id = job.delivery_id;
                let executor = self.executor.clone();
                let reports = self.reports.clone();
                let shutdown = shutdown.clone();
                in_flight.spawn(delivery_id, async move {
                    let report = executor.deliver(job, gate, shutdown).await;
                    // The recorder outlives every task, so the send cannot fail.
                    let _ = reports.send(report).await;
                });
            }
            if !full {
                return Ok(Round {
                    claimed: claimed_total,
                    backlog: false,
                });
            }
        }
    }

    fn pace(&self) -> Pace {
        Pace {
            capacity: self.concurrency as usize + self.batch_size as usize,
            // Half a batch: the other half, still waiting for request slots, keeps them busy
            // while the claim is under way.
            worthwhile: (self.batch_size as usize / 2).max(1),
        }
    }

    /// Shutdown: tasks that have not started sending hand their delivery back at once; those on
    /// the wire get the grace period, after which they are cut off and handed back too.
    async fn drain(&self, mut in_flight: InFlight) {
        let waiting = in_flight.tasks.len();
        if waiting > 0 {
            tracing::info!(
                in_flight = waiting,
                "waiting for deliveries in flight to finish"
            );
        }
        let deadline = tokio::time::sleep(self.shutdown_grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = in_flight.next_done() => if done.is_none() {
                    break;
                },
                _ = &mut deadline => {
                    in_flight.tasks.abort_all();
                    let cut_off: Vec<_> = in_flight.deliveries.values().map(|&delivery_id| {
                        Release { delivery_id, delay: Duration::ZERO }
                    }).collect();
                    tracing::warn!(cut_off = cut_off.len(), "grace period over; handing unfinished deliveries back");
                    for release in cut_off {
                        let _ = self.reports.send(Report::Released(release)).await;
                    }
                    break;
                }
            }
        }
    }
}
