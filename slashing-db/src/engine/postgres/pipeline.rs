//! Pipelining: several statements sent in one write and answered in one
//! round trip, in order. tokio-postgres pipelines requests whose futures are
//! polled together; [`pipeline`] makes the order explicit.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

/// Every transaction of the engine starts with this (sent with the first
/// statement, not on its own).
pub(super) const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// One statement of a pipeline: transaction control, or a prepared statement
/// with owned parameters.
pub(super) enum Step {
    Control(&'static str),
    Prepared(Statement, Vec<Box<dyn ToSql + Sync>>),
}

impl Step {
    fn run<'a>(
        &'a self,
        c: &'a Client,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + 'a>> {
        match self {
            Step::Control(sql) => {
                Box::pin(async move { c.batch_execute(sql).await.map(|()| Vec::new()) })
            }
            Step::Prepared(st, params) => Box::pin(async move {
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
                c.query(st, &refs).await
            }),
        }
    }
}

/// Runs `steps` as one pipeline: every request is queued on the connection
/// in order (each future is first polled in order, and tokio-postgres sends a
/// request on its first poll), then all answers are awaited. The server runs
/// them in that order; one round trip in all.
pub(super) async fn pipeline(
    c: &Client,
    steps: &[Step],
) -> Vec<Result<Vec<Row>, tokio_postgres::Error>> {
    let mut futures: Vec<_> = steps.iter().map(|s| s.run(c)).collect();
    let mut answers: Vec<Option<Result<Vec<Row>, tokio_postgres::Error>>> =
        steps.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, answer) in futures.iter_mut().zip(answers.iter_mut()) {
            if answer.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *answer = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    answers.into_iter().flatten().collect()
}

pub(super) fn boxed<T: ToSql + Sync + 'static>(v: T) -> Box<dyn ToSql + Sync> {
    Box::new(v)
}
