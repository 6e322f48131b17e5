//! Running many setup tasks at once, a bounded number at a time.

use std::future::Future;

use anyhow::Context as _;
use tokio::task::JoinSet;

/// Runs `work` on every item with at most `limit` at once, and returns the
/// results in the items' order. Stops at the first error.
///
/// # Errors
/// The first error of any item (the others still running are aborted).
pub async fn map_bounded<T, R, F, Fut>(
    items: Vec<T>,
    limit: usize,
    work: F,
) -> anyhow::Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = anyhow::Result<R>> + Send + 'static,
{
    let total = items.len();
    let mut results: Vec<Option<R>> = (0..total).map(|_| None).collect();
    let mut running = JoinSet::new();
    let mut items = items.into_iter().enumerate();
    loop {
        while running.len() < limit.max(1) {
            let Some((index, item)) = items.next() else {
                break;
            };
            let future = work(item);
            running.spawn(async move { (index, future.await) });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (index, result) = joined.context("a setup task panicked")?;
        results[index] = Some(result?);
    }
    Ok(results.into_iter().flatten().collect())
}
