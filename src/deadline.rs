//! Deadlines for calls to the Kubernetes API made outside the watches. kube's client has only
//! a long read timeout (the watches need it), so a hung apiserver would hold a reconcile, a
//! status write or a Lease renewal for minutes; each such call is bounded here instead.

use std::{future::Future, time::Duration};

/// Reads and writes of single objects: Secrets, status, Events, the binding Secret.
pub const API_CALL: Duration = Duration::from_secs(10);

/// Runs one API call within `limit`; a call that takes longer fails with an error that says so.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_elapsed) => Err(kube::Error::Service(
            format!(
                "{what}: the Kubernetes API did not answer within {}",
                crate::duration::human(limit)
            )
            .into(),
        )),
    }
}

/// `within(API_CALL, …)`.
pub async fn api<T>(
    what: &str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    within(API_CALL, what, call).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_that_hangs_ends_with_an_error_naming_it() {
        let hung = futures::future::pending::<Result<(), kube::Error>>();
        let error = within(Duration::from_secs(3), "reading Secret \"db\"", hung)
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("reading Secret \"db\": the Kubernetes API did not answer within 3.0s"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_prompt_answer_passes_through() {
        let answer = within(Duration::from_secs(3), "x", async {
            Ok::<_, kube::Error>(7)
        })
        .await;
        assert_eq!(answer.unwrap(), 7);
    }
}
