//! One item per scheduled job (`JOB#<name>`, `LEASE`): whoever holds it
//! until its time runs the job, so two runs never overlap, with or without
//! reserved concurrency. A run that died leaves a lease that lapses at its
//! invocation's deadline.

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use super::{millis, n, s, schema, Store, StoreError};

fn job_pk(job: &str) -> String {
    format!("JOB#{job}")
}

const LEASE_SK: &str = "LEASE";

impl Store {
    /// Takes `job`'s lease for `holder` until `until`, unless another holds
    /// one that has not lapsed at `now`: whether it was taken.
    pub async fn acquire_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(schema::PK, s(job_pk(job)))
            .item(schema::SK, s(LEASE_SK))
            .item("holder", s(holder))
            .item("lease_until", n(millis(until)))
            .condition_expression("attribute_not_exists(pk) OR lease_until < :now")
            .expression_attribute_values(":now", n(millis(now)))
            .send()
            .await;
        super::applied(result)
    }

    /// Gives `job`'s lease back at `now`, if `holder` still holds it.
    pub async fn release_job_lease(
        &self,
        job: &str,
        holder: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(schema::PK, s(job_pk(job)))
            .key(schema::SK, s(LEASE_SK))
            .update_expression("SET lease_until = :now")
            .condition_expression("holder = :holder")
            .expression_attribute_values(":now", n(millis(now)))
            .expression_attribute_values(":holder", AttributeValue::S(holder.to_string()))
            .send()
            .await;
        super::applied(result).map(|_| ())
    }
}
