//! The DynamoDB backend, for several replicas on several hosts. Two tables:
//!
//! - the state table (`pk`, `sk`; TTL on `expires_at`): incidents (`INC#id` with `META`, `STEP#n`,
//!   `NG#cluster/nodegroup`), events (`EVT#id`), plans (`PLAN#id`), the kill switch (`CTRL#…`),
//!   mutations (`MUT#account`, `MUTR#resource#fix`), breakers (`BRK#scope`, `BRKF#scope`), leases
//!   (`LEASE#key`), audit chain heads (`CHAIN#name`) and a per-account rate item (`RATE#account`);
//!   three indexes: incidents by nodegroup (`gsi1`), incidents by shared resource (`gsi2`), and lists
//!   (`gsi3`: all incidents, plans by status, breakers, chains);
//! - the audit table (`chain`, `seq`): the hash-chained records. Each incident is a chain of its
//!   own; records of no incident go to daily sharded `loose/…` chains, so replicas rarely contend.
//!
//! A write transaction reads what it needs directly (strongly consistent on the tables), buffers
//! its writes, and commits them with one `TransactWriteItems` whose conditions assert that what it
//! read is still so (chain heads, event marks, leases, the account's rate item). When another
//! replica got in first the commit is cancelled and the store runs the work again
//! ([`AuditError::Conflict`]). Index reads are eventually consistent; the leases make that safe
//! for the reads that decide anything.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem, Update,
};

use super::backend::{
    BreakerFailure, ChainBreak, ChainHead, EventMark, IncidentPlan, Lease, LeaseClaim, Member,
    MutationRow, NewIncident, NewRecord, PlanSave, PlanStatusChange, PlanWrite, ReadWork, Reads,
    StepChange, StoreResult, StoredPlan, SubjectScope, WriteWork, Writes,
};
use super::control::{Breaker, KillSwitch, PlanRow, PlanStatus};
use super::store::{GENESIS, chain_hash};
use super::*;
use crate::core::time::now;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const KILL_SWITCH: &str = "CTRL#kill_switch";
/// Record bodies above this are stored cut short (an item holds at most 400 KB).
pub(super) const MAX_BODY: usize = 300 * 1024;
/// Loose records spread over this many chains a day.
pub(super) const LOOSE_SHARDS: u64 = 8;
/// Days of loose chains `loose_records` looks back over.
pub(super) const LOOSE_DAYS: i64 = 7;

mod items;
mod reads;
mod reservations;
mod schema;
mod tx;
mod writes;

use items::*;
use reservations::Reservations;
pub use schema::create_tables;
use tx::*;

pub struct DynamoBackend {
    client: Client,
    state: String,
    audit: String,
    runtime: tokio::runtime::Handle,
    event_ttl: Duration,
    /// Mutations reserved by this process, by the id handed out for them.
    reservations: Reservations,
}

impl DynamoBackend {
    /// `runtime` runs the DynamoDB calls of the synchronous store interface.
    pub fn new(
        client: Client,
        state_table: &str,
        audit_table: &str,
        event_ttl: Duration,
        runtime: tokio::runtime::Handle,
    ) -> DynamoBackend {
        DynamoBackend {
            client,
            state: state_table.into(),
            audit: audit_table.into(),
            runtime,
            event_ttl,
            reservations: Reservations::new(),
        }
    }

    pub fn tables(&self) -> (&str, &str) {
        (&self.state, &self.audit)
    }

    /// Runs a DynamoDB call from the synchronous store interface.
    pub(super) fn wait<F: Future>(&self, future: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(current)
                if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(|| self.runtime.block_on(future))
            }
            _ => self.runtime.block_on(future),
        }
    }

    pub fn write<T>(&self, work: WriteWork<'_, T>) -> StoreResult<T> {
        let tx = DynamoTx {
            backend: self,
            buffer: RefCell::new(Vec::new()),
            heads: RefCell::new(HashMap::new()),
            released: RefCell::new(Vec::new()),
        };
        let value = work(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    pub fn read<T>(&self, work: ReadWork<'_, T>) -> StoreResult<T> {
        work(self)
    }

    pub(super) fn get(&self, table: &str, item_key: Item) -> Result<Option<Item>, AuditError> {
        let output = self
            .wait(
                self.client
                    .get_item()
                    .table_name(table)
                    .set_key(Some(item_key))
                    .consistent_read(true)
                    .send(),
            )
            .map_err(sdk_error)?;
        Ok(output.item().cloned())
    }

    pub(super) fn get_state(&self, pk: &str, sk: &str) -> Result<Option<Item>, AuditError> {
        self.get(&self.state, key(pk, sk))
    }

    /// Every item a query matches, across pages.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn query(
        &self,
        table: &str,
        index: Option<&str>,
        condition: &str,
        names: &[(&str, &str)],
        values: &[(&str, AttributeValue)],
        forward: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, AuditError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(table)
                .key_condition_expression(condition)
                .scan_index_forward(forward)
                .set_exclusive_start_key(start.take());
            for (placeholder, name) in names {
                request = request.expression_attribute_names(*placeholder, *name);
            }
            for (placeholder, value) in values {
                request = request.expression_attribute_values(*placeholder, value.clone());
            }
            request = match index {
                Some(index) => request.index_name(index),
                None => request.consistent_read(true),
            };
            if let Some(limit) = limit {
                request = request.limit((limit - items.len().min(limit)).max(1) as i32);
            }
            let output = self.wait(request.send()).map_err(sdk_error)?;
            items.extend(output.items().iter().cloned());
            if limit.is_some_and(|l| items.len() >= l) {
                items.truncate(limit.unwrap_or(usize::MAX));
                return Ok(items);
            }
            match output.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(items),
            }
        }
    }

    /// The state items whose `pk` is `pk`, optionally with `sk` starting with `prefix`.
    pub(super) fn partition(
        &self,
        pk: &str,
        prefix: Option<&str>,
    ) -> Result<Vec<Item>, AuditError> {
        match prefix {
            Some(prefix) => self.query(
                &self.state,
                None,
                "#pk = :pk AND begins_with(#sk, :prefix)",
                &[("#pk", "pk"), ("#sk", "sk")],
                &[(":pk", s(pk)), (":prefix", s(prefix))],
                true,
                None,
            ),
            None => self.query(
                &self.state,
                None,
                "#pk = :pk",
                &[("#pk", "pk")],
                &[(":pk", s(pk))],
                true,
                None,
            ),
        }
    }

    /// Items of a list index partition (`gsi3`), newest first.
    pub(super) fn listed(&self, list: &str, limit: Option<usize>) -> Result<Vec<Item>, AuditError> {
        self.query(
            &self.state,
            Some("gsi3"),
            "#k = :k",
            &[("#k", "gsi3pk")],
            &[(":k", s(list))],
            false,
            limit,
        )
    }

    pub(super) fn summary(&self, meta: &Item) -> Result<IncidentSummary, AuditError> {
        let id = text(meta, "incident_id").unwrap_or_default();
        let id_for_errors = id.clone();
        let steps = self.partition(&format!("INC#{id}"), Some("STEP#"))?;
        let nodegroups = self
            .partition(&format!("INC#{id}"), Some("NG#"))?
            .iter()
            .filter_map(|item| text(item, "sk"))
            .map(|sk| sk.trim_start_matches("NG#").to_string())
            .collect();
        Ok(IncidentSummary {
            incident_id: id,
            account: text(meta, "account").unwrap_or_default(),
            region: text(meta, "region").unwrap_or_default(),
            cluster: text(meta, "cluster").unwrap_or_default(),
            nodegroup: text(meta, "nodegroup").unwrap_or_default(),
            cause: text(meta, "cause").unwrap_or_default(),
            mode: text(meta, "mode").unwrap_or_default(),
            outcome: text(meta, "outcome")
                .as_deref()
                .and_then(Outcome::parse)
                .ok_or_else(|| {
                    backend_error(format!("incident {id_for_errors} has no known outcome"))
                })?,
            summary: text(meta, "summary").unwrap_or_default(),
            plan_id: text(meta, "plan_id"),
            opened_at: text(meta, "opened_at").unwrap_or_default(),
            updated_at: text(meta, "updated_at").unwrap_or_default(),
            events: number(meta, "events").unwrap_or(0) as u32,
            actions: steps
                .iter()
                .map(|step| ActionSummary {
                    kind: text(step, "kind").unwrap_or_default(),
                    status: text(step, "status").unwrap_or_default(),
                    detail: text(step, "detail").unwrap_or_default(),
                })
                .collect(),
            nodegroups,
        })
    }

    /// Incident summaries from index items (which carry the incident id).
    pub(super) fn summaries(&self, items: Vec<Item>) -> Result<Vec<IncidentSummary>, AuditError> {
        let mut found = Vec::new();
        for item in items {
            let Some(id) = text(&item, "incident_id") else {
                continue;
            };
            // The index may lag: the table has the truth.
            if let Some(meta) = self.get_state(&format!("INC#{id}"), "META")? {
                found.push(self.summary(&meta)?);
            }
        }
        found.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        Ok(found)
    }

    pub(super) fn by_nodegroup(&self, key: &NodegroupKey) -> Result<Vec<Item>, AuditError> {
        self.query(
            &self.state,
            Some("gsi1"),
            "#k = :k",
            &[("#k", "gsi1pk")],
            &[(":k", s(nodegroup_index(key)))],
            false,
            None,
        )
    }

    pub(super) fn by_subject(
        &self,
        account: &str,
        region: &str,
        subject: &str,
    ) -> Result<Vec<Item>, AuditError> {
        self.query(
            &self.state,
            Some("gsi2"),
            "#k = :k",
            &[("#k", "gsi2pk")],
            &[(":k", s(subject_index(account, region, subject)))],
            false,
            None,
        )
    }

    /// The newest applied step among incidents: (incident id, time).
    pub(super) fn last_applied(
        &self,
        incidents: &[Item],
    ) -> Result<Option<(String, String)>, AuditError> {
        let mut best: Option<(String, String)> = None;
        for incident in incidents {
            let Some(id) = text(incident, "incident_id") else {
                continue;
            };
            for step in self.partition(&format!("INC#{id}"), Some("STEP#"))? {
                if text(&step, "status").as_deref() != Some("applied") {
                    continue;
                }
                let at = text(&step, "updated_at").unwrap_or_default();
                if best.as_ref().is_none_or(|(_, b)| at > *b) {
                    best = Some((id.clone(), at));
                }
            }
        }
        Ok(best)
    }

    /// Every chain that has records, read from the records themselves (a Scan of the audit
    /// table, its `chain` attribute only): a chain whose HEAD item was deleted is still found.
    pub(super) fn record_chains(&self) -> Result<std::collections::BTreeSet<String>, AuditError> {
        let mut chains = std::collections::BTreeSet::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self.wait(
                self.client
                    .scan()
                    .table_name(&self.audit)
                    .projection_expression("#c")
                    .expression_attribute_names("#c", "chain")
                    .consistent_read(true)
                    .set_exclusive_start_key(start.take())
                    .send(),
            );
            let page = page.map_err(sdk_error)?;
            chains.extend(page.items().iter().filter_map(|item| text(item, "chain")));
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(chains),
            }
        }
    }

    /// The chains the heads list, and those only the records know.
    pub(super) fn every_chain(&self) -> Result<std::collections::BTreeSet<String>, AuditError> {
        let mut chains = self.record_chains()?;
        chains.extend(
            self.listed("CHAINS", None)?
                .iter()
                .filter_map(|item| text(item, "chain")),
        );
        Ok(chains)
    }

    pub(super) fn chain_records(
        &self,
        chain: &str,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Record>, AuditError> {
        self.query(
            &self.audit,
            None,
            "#c = :c",
            &[("#c", "chain")],
            &[(":c", s(chain))],
            forward,
            limit,
        )?
        .iter()
        .map(record_from_item)
        .collect()
    }
}
