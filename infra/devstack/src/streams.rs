//! A table's DynamoDB stream, read as Lambda's event source mapping reads
//! it: DynamoDB Local serves the Streams API (`DynamoDBStreams_20120810`)
//! on its own endpoint; records are handed on in Lambda's JSON, filtered by
//! the function's `FilterCriteria` as Lambda filters them (for the pattern
//! forms template.yaml uses: nested objects, and arrays of exact values).
//!
//! The stream is read without the IAM check: it is the Lambda service
//! that reads it, as SAM's DynamoDB event grants.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::StackError;

/// One table's stream, read from where it was when opened (or from its
/// start), shard by shard.
pub struct StreamReader {
    http: reqwest::Client,
    endpoint: String,
    stream_arn: String,
    /// Each shard's next iterator; `None` once a closed shard is read out.
    iterators: BTreeMap<String, Option<String>>,
    /// Each shard's last record read, to take up again after.
    last: BTreeMap<String, String>,
    from_start: bool,
}

impl StreamReader {
    /// The stream of `table` on the DynamoDB endpoint `endpoint`:
    /// `from_start` reads every record still in it, otherwise only those
    /// written from now on.
    pub async fn open(
        endpoint: &str,
        table: &str,
        from_start: bool,
    ) -> Result<StreamReader, StackError> {
        let mut reader = StreamReader {
            http: reqwest::Client::new(),
            endpoint: endpoint.to_string(),
            stream_arn: String::new(),
            iterators: BTreeMap::new(),
            last: BTreeMap::new(),
            from_start,
        };
        let described = reader
            .call(
                "DynamoDB_20120810.DescribeTable",
                json!({"TableName": table}),
            )
            .await?;
        reader.stream_arn = described["Table"]["LatestStreamArn"]
            .as_str()
            .ok_or_else(|| StackError::Other(format!("table {table} has no stream")))?
            .to_string();
        reader.refresh_shards().await?;
        Ok(reader)
    }

    async fn call(&self, target: &str, body: Value) -> Result<Value, StackError> {
        let response = self
            .http
            .post(&self.endpoint)
            .header("x-amz-target", target)
            .header("content-type", "application/x-amz-json-1.0")
            // DynamoDB Local wants a signature's form, not its truth.
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=lambda/20260101/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .json(&body)
            .send()
            .await
            .map_err(|e| StackError::Other(format!("{target}: {e}")))?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .map_err(|e| StackError::Other(format!("{target}: {e}")))?;
        if !status.is_success() {
            return Err(StackError::Other(format!("{target}: {status} {answer}")));
        }
        Ok(answer)
    }

    /// Picks up shards it has not seen (a new shard after a split).
    async fn refresh_shards(&mut self) -> Result<(), StackError> {
        let described = self
            .call(
                "DynamoDBStreams_20120810.DescribeStream",
                json!({"StreamArn": self.stream_arn}),
            )
            .await?;
        let shards = described["StreamDescription"]["Shards"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for shard in shards {
            let Some(id) = shard["ShardId"].as_str() else {
                continue;
            };
            if self.iterators.contains_key(id) {
                continue;
            }
            // A child shard of one read out is read from its start.
            let start = self.from_start || shard.get("ParentShardId").is_some();
            let iterator = self
                .call(
                    "DynamoDBStreams_20120810.GetShardIterator",
                    json!({"StreamArn": self.stream_arn, "ShardId": id,
                           "ShardIteratorType": if start { "TRIM_HORIZON" } else { "LATEST" }}),
                )
                .await?;
            self.iterators.insert(
                id.to_string(),
                iterator["ShardIterator"].as_str().map(str::to_string),
            );
        }
        self.from_start = true;
        Ok(())
    }

    /// A shard's iterator after its last record read (from its start if
    /// none was).
    async fn iterator_after(&self, shard: &str) -> Result<String, StackError> {
        let request = match self.last.get(shard) {
            Some(n) => json!({"StreamArn": self.stream_arn, "ShardId": shard,
                              "ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": n}),
            None => json!({"StreamArn": self.stream_arn, "ShardId": shard,
                           "ShardIteratorType": "TRIM_HORIZON"}),
        };
        let got = self
            .call("DynamoDBStreams_20120810.GetShardIterator", request)
            .await?;
        got["ShardIterator"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| StackError::Other(format!("no iterator for shard {shard}")))
    }

    /// The records written since the last read, in each shard's order, as
    /// Lambda hands them on (with `eventSourceARN`).
    pub async fn read(&mut self) -> Result<Vec<Value>, StackError> {
        self.refresh_shards().await?;
        let mut records = Vec::new();
        let shards: Vec<String> = self.iterators.keys().cloned().collect();
        for shard in shards {
            let Some(Some(iterator)) = self.iterators.get(&shard).cloned() else {
                continue;
            };
            let got = match self
                .call(
                    "DynamoDBStreams_20120810.GetRecords",
                    json!({"ShardIterator": iterator}),
                )
                .await
            {
                Ok(got) => got,
                // An iterator DynamoDB Local no longer takes (trimmed or
                // expired): a new one after the last record read.
                Err(e)
                    if e.to_string().contains("TrimmedDataAccess")
                        || e.to_string().contains("ExpiredIterator") =>
                {
                    let again = self.iterator_after(&shard).await?;
                    self.call(
                        "DynamoDBStreams_20120810.GetRecords",
                        json!({"ShardIterator": again}),
                    )
                    .await?
                }
                Err(e) => return Err(e),
            };
            for mut record in got["Records"].as_array().cloned().unwrap_or_default() {
                if let Some(n) = record["dynamodb"]["SequenceNumber"].as_str() {
                    self.last.insert(shard.clone(), n.to_string());
                }
                record["eventSourceARN"] = json!(self.stream_arn);
                records.push(record);
            }
            self.iterators
                .insert(shard, got["NextShardIterator"].as_str().map(str::to_string));
        }
        Ok(records)
    }
}

/// Whether `record` passes `filters` (none passes everything), as Lambda's
/// event filtering matches: every field a pattern names must be in the
/// record, an object matched field by field, an array of values by any
/// one of them.
pub fn passes(filters: &[Value], record: &Value) -> bool {
    filters.is_empty() || filters.iter().any(|f| matches(f, record))
}

fn matches(pattern: &Value, value: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields
            .iter()
            .all(|(k, p)| value.get(k).is_some_and(|v| matches(p, v))),
        Value::Array(allowed) => allowed.iter().any(|a| a == value),
        other => other == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_lambda_matches_them() {
        let filter =
            json!({"eventName": ["INSERT"], "dynamodb": {"Keys": {"sk": {"S": ["EVENT"]}}}});
        let insert = json!({"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "x"}, "sk": {"S": "EVENT"}}}});
        let modify = json!({"eventName": "MODIFY", "dynamodb": {"Keys": {"pk": {"S": "x"}, "sk": {"S": "EVENT"}}}});
        let other = json!({"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "x"}, "sk": {"S": "PAY"}}}});
        assert!(passes(std::slice::from_ref(&filter), &insert));
        assert!(!passes(std::slice::from_ref(&filter), &modify));
        assert!(!passes(std::slice::from_ref(&filter), &other));
        assert!(passes(&[], &other));
    }
}
