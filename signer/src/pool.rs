//! The signing workers: a bounded queue in front of a fixed set of threads
//! (one per core by default), never the async runtime's threads.
//!
//! A worker takes every job waiting (up to `max_batch` items) and runs them
//! through the pipeline as one batch: under a burst, single `Sign` calls
//! from many connections share one slashing-database transaction just as a
//! `SignBatch` does. An item that waited past its deadline, or that finds
//! the queue full, is answered `OVERLOADED` at once: latency does not grow
//! without bound, and the client can retry elsewhere.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::pipeline::{Outcome, Pipeline, Request};

/// The answer to one queued item.
#[derive(Debug)]
pub enum Answer {
    /// The pipeline's answer.
    Done(Outcome),
    /// It waited past its deadline.
    Overloaded,
}

/// Work for the pool: items answered together.
#[derive(Debug)]
pub struct Job {
    /// The items.
    pub items: Vec<Request>,
    /// Which frontend asked (metrics label).
    pub frontend: &'static str,
    /// Answer `OVERLOADED` if not started by then.
    pub deadline: Instant,
    /// Where the answers go, one per item, in order.
    pub reply: oneshot::Sender<Vec<Answer>>,
    enqueued: Instant,
}

impl Job {
    /// A job for `items`.
    pub fn new(
        items: Vec<Request>,
        frontend: &'static str,
        deadline: Instant,
    ) -> (Self, oneshot::Receiver<Vec<Answer>>) {
        let (reply, rx) = oneshot::channel();
        (
            Self {
                items,
                frontend,
                deadline,
                reply,
                enqueued: Instant::now(),
            },
            rx,
        )
    }
}

/// Queued jobs, one lane per client, served in turn: a worker's batch takes
/// the first job of each lane in rotation, so a client that floods the queue
/// delays another client's request by at most one of its jobs per worker —
/// not by everything it queued. No configuration: the default is fair.
#[derive(Debug, Default)]
struct Queue {
    /// Lanes in the order they are served next.
    lanes: VecDeque<Lane>,
    items: usize,
    closed: bool,
}

#[derive(Debug)]
struct Lane {
    client: String,
    jobs: VecDeque<Job>,
    items: usize,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// Queues `job` in its client's lane, unless that client already holds
    /// `share` items or more with it (a first job of any size goes in).
    /// One look-up of the lane; a name is copied only for a new lane.
    fn push(&mut self, job: Job, share: usize) -> Result<(), Job> {
        let n = job.items.len();
        let client = job.items.first().map_or("", |r| r.client.as_str());
        match self.lanes.iter_mut().find(|l| l.client == client) {
            Some(lane) => {
                if lane.items > 0 && lane.items + n > share {
                    return Err(job);
                }
                lane.items += n;
                lane.jobs.push_back(job);
            }
            // A client with nothing queued is served next: it has not been
            // served for a while (a flooder's lane never empties).
            None => {
                let client = client.to_owned();
                self.lanes.push_front(Lane {
                    client,
                    items: n,
                    jobs: VecDeque::from([job]),
                });
            }
        }
        self.items += n;
        Ok(())
    }

    /// The next lane's first job, if it fits beside `taken` items (a first
    /// job always fits); the lane goes to the back of the rotation.
    fn pop_fair(&mut self, taken: usize, max_batch: usize) -> Option<Job> {
        let lane = self.lanes.front_mut()?;
        let n = lane.jobs.front().map_or(0, |j| j.items.len());
        if taken > 0 && taken + n > max_batch {
            return None;
        }
        let job = lane.jobs.pop_front()?;
        lane.items -= n;
        self.items -= n;
        if let Some(lane) = self.lanes.pop_front()
            && !lane.jobs.is_empty()
        {
            self.lanes.push_back(lane);
        }
        Some(job)
    }
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    pipeline: Arc<Pipeline>,
    capacity: usize,
    max_batch: usize,
}

/// The worker pool.
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The queue holds `capacity` items already.
    Full,
    /// The pool is shutting down.
    Closed,
}

impl Pool {
    /// Starts `workers` threads.
    pub fn start(
        pipeline: Arc<Pipeline>,
        workers: usize,
        capacity: usize,
        max_batch: usize,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            pipeline,
            capacity,
            max_batch: max_batch.max(1),
        });
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let s = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("signer-worker-{i}"))
                    .spawn(move || work(&s))?,
            );
        }
        Ok(Self {
            shared,
            threads: Mutex::new(threads),
        })
    }

    /// Queues a job, or gives it back with why not.
    #[allow(clippy::result_large_err)]
    pub fn submit(&self, job: Job) -> Result<(), (Rejected, Job)> {
        let Ok(mut q) = self.shared.queue.lock() else {
            return Err((Rejected::Closed, job));
        };
        if q.closed {
            return Err((Rejected::Closed, job));
        }
        // A job larger than the whole queue still goes in when the queue is empty.
        if q.items > 0 && q.items + job.items.len() > self.shared.capacity {
            return Err((Rejected::Full, job));
        }
        // No client may hold more than half the queue (a first job of any
        // size goes in): a flood leaves room for everyone else's requests.
        if let Err(job) = q.push(job, self.shared.capacity / 2) {
            return Err((Rejected::Full, job));
        }
        self.shared
            .pipeline
            .metrics()
            .queue_depth
            .set(i64::try_from(q.items).unwrap_or(i64::MAX));
        drop(q);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// False once [`Pool::shutdown`] has begun: frontends that sign on their
    /// own threads (privval) stop with the pool.
    pub fn accepting(&self) -> bool {
        self.shared.queue.lock().is_ok_and(|q| !q.closed)
    }

    /// Stops taking jobs, lets the workers finish what is queued, and waits for them.
    pub fn shutdown(&self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.closed = true;
        }
        self.shared.wake.notify_all();
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

fn take(shared: &Shared) -> Option<Vec<Job>> {
    let mut q = shared.queue.lock().ok()?;
    loop {
        if !q.is_empty() {
            break;
        }
        if q.closed {
            return None;
        }
        q = shared.wake.wait(q).ok()?;
    }
    let mut jobs = Vec::new();
    let mut n = 0;
    while let Some(job) = q.pop_fair(n, shared.max_batch) {
        n += job.items.len();
        jobs.push(job);
    }
    shared
        .pipeline
        .metrics()
        .queue_depth
        .set(i64::try_from(q.items).unwrap_or(i64::MAX));
    let more = !q.is_empty();
    drop(q);
    if more {
        // Another worker can start on the rest while this one works.
        shared.wake.notify_one();
    }
    Some(jobs)
}

fn work(shared: &Shared) {
    let metrics = shared.pipeline.metrics().clone();
    while let Some(jobs) = take(shared) {
        let now = Instant::now();
        let (live, late): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| now <= j.deadline);
        for job in late {
            for _ in &job.items {
                metrics.request(job.frontend, "any", "overloaded");
                metrics.stage("queue", now.duration_since(job.enqueued));
            }
            let answers = job.items.iter().map(|_| Answer::Overloaded).collect();
            let _ = job.reply.send(answers);
        }
        // One pipeline batch per frontend (the metrics label is per batch).
        let mut live = live;
        while let Some(first) = live.first() {
            let frontend = first.frontend;
            let (mine, rest): (Vec<Job>, Vec<Job>) =
                live.into_iter().partition(|j| j.frontend == frontend);
            live = rest;
            let mut sizes = Vec::with_capacity(mine.len());
            let mut items = Vec::new();
            let mut replies = Vec::with_capacity(mine.len());
            for job in mine {
                for _ in &job.items {
                    metrics.stage("queue", now.duration_since(job.enqueued));
                }
                sizes.push(job.items.len());
                items.extend(job.items);
                replies.push(job.reply);
            }
            let mut outcomes = shared.pipeline.sign_batch(frontend, items).into_iter();
            for (size, reply) in sizes.into_iter().zip(replies) {
                let answers: Vec<Answer> = outcomes.by_ref().take(size).map(Answer::Done).collect();
                // A caller that went away (deadline, disconnect) drops its receiver: fine.
                let _ = reply.send(answers);
            }
        }
    }
}
