//! `worker-events`: new events from the table's stream (each event item's
//! INSERT, template.yaml's filter) are fanned out to the merchant's
//! endpoints and delivered; the events queue brings each retry when it is
//! due, and events or deliveries the sweep found waiting. Failures to
//! reach the table are reported per record (partial batch response: a
//! stream resumes from the first, a queue keeps only those); a merchant's
//! refusal is not a failure, it is recorded and retried on the schedule.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::events::deliver::{self, DeliverError, EventMessage};
use crate::services::Services;

/// One record of a batch: the identifier a failure is reported by, and
/// what it asks.
enum Work {
    /// The event item with this key was put (a stream record).
    New(String),
    /// A queued message.
    Queued(EventMessage),
    /// Nothing to do (another item's change, an unreadable message).
    Nothing,
}

fn work(record: &Value) -> Work {
    match record["eventSource"].as_str() {
        Some("aws:dynamodb") => {
            let keys = &record["dynamodb"]["Keys"];
            let is_event = record["eventName"] == "INSERT" && keys["sk"]["S"] == "EVENT";
            match keys["pk"]["S"].as_str() {
                Some(pk) if is_event && pk.starts_with("EVENT#") => Work::New(pk.to_string()),
                _ => Work::Nothing,
            }
        }
        Some("aws:sqs") => match record["body"]
            .as_str()
            .map(serde_json::from_str::<EventMessage>)
        {
            Some(Ok(m)) => Work::Queued(m),
            other => {
                // Retrying cannot fix it: dropped, loudly.
                tracing::error!(error = ?other.map(|r| r.err()), "unreadable events message dropped");
                Work::Nothing
            }
        },
        _ => Work::Nothing,
    }
}

fn identifier(record: &Value) -> String {
    record["dynamodb"]["SequenceNumber"]
        .as_str()
        .or_else(|| record["messageId"].as_str())
        .unwrap_or_default()
        .to_string()
}

async fn run(services: &Services, work: Work) -> Result<(), DeliverError> {
    let now = OffsetDateTime::now_utc();
    match work {
        Work::Nothing => Ok(()),
        Work::New(pk) | Work::Queued(EventMessage::FanOut { event: pk }) => {
            match services.store.event_by_key(&pk).await? {
                Some(event) => deliver::fan_out(services, &event, now).await,
                // Past its time in the table: nothing left to tell.
                None => Ok(()),
            }
        }
        Work::Queued(EventMessage::Delivery {
            merchant,
            event_id,
            endpoint_id,
        }) => deliver::attempt(services, &merchant, event_id, endpoint_id).await,
    }
}

/// A batch of stream records or queue messages (Lambda's JSON as is); the
/// answer is the partial batch response.
pub async fn handle(services: &Services, batch: Value) -> Value {
    let records = batch["Records"].as_array().cloned().unwrap_or_default();
    let mut tasks = tokio::task::JoinSet::new();
    for (place, record) in records.iter().enumerate() {
        let id = identifier(record);
        let work = work(record);
        let services = services.clone();
        tasks.spawn(async move { (place, id, run(&services, work).await) });
    }
    let mut failed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((_, _, Ok(()))) => {}
            Ok((place, id, Err(e))) => {
                tracing::error!(record = %id, error = %e, "events record failed; it will be retried");
                failed.push((place, id));
            }
            Err(e) => tracing::error!(error = %e, "events task failed"),
        }
    }
    // A stream resumes from the first failure: report in batch order.
    failed.sort();
    json!({
        "batchItemFailures": failed
            .into_iter()
            .map(|(_, id)| json!({"itemIdentifier": id}))
            .collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_event_item_or_a_readable_message_is_work() {
        let insert = json!({"eventSource": "aws:dynamodb", "eventName": "INSERT",
            "dynamodb": {"Keys": {"pk": {"S": "EVENT#m_1#evt_X"}, "sk": {"S": "EVENT"}}, "SequenceNumber": "7"}});
        assert!(matches!(work(&insert), Work::New(pk) if pk == "EVENT#m_1#evt_X"));
        assert_eq!(identifier(&insert), "7");
        let modify = json!({"eventSource": "aws:dynamodb", "eventName": "MODIFY",
            "dynamodb": {"Keys": {"pk": {"S": "EVENT#m_1#evt_X"}, "sk": {"S": "EVENT"}}}});
        assert!(matches!(work(&modify), Work::Nothing));
        let payment = json!({"eventSource": "aws:dynamodb", "eventName": "INSERT",
            "dynamodb": {"Keys": {"pk": {"S": "PAY#pay_X"}, "sk": {"S": "PAY"}}}});
        assert!(matches!(work(&payment), Work::Nothing));
        let garbage = json!({"eventSource": "aws:sqs", "messageId": "m1", "body": "{"});
        assert!(matches!(work(&garbage), Work::Nothing));
        assert_eq!(identifier(&garbage), "m1");
    }
}
