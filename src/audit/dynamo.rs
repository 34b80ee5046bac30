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
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem, Update,
};
use serde_json::Value;

use super::backend::{ChainBreak, Lease, Reads, Writes};
use super::control::{Breaker, KillSwitch, PlanRow, PlanStatus};
use super::store::{GENESIS, chain_hash, now};
use super::*;

type Item = HashMap<String, AttributeValue>;

const KILL_SWITCH: &str = "CTRL#kill_switch";
/// Record bodies above this are stored cut short (an item holds at most 400 KB).
const MAX_BODY: usize = 300 * 1024;
/// Loose records spread over this many chains a day.
const LOOSE_SHARDS: u64 = 8;
/// Days of loose chains `loose_records` looks back over.
const LOOSE_DAYS: i64 = 7;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn text(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    }
}

fn number(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

fn backend_error(error: impl std::fmt::Display) -> AuditError {
    AuditError::Backend(error.to_string())
}

fn sdk_error<E: std::error::Error + 'static>(
    error: aws_sdk_dynamodb::error::SdkError<E>,
) -> AuditError {
    AuditError::Backend(aws_sdk_dynamodb::error::DisplayErrorContext(&error).to_string())
}

/// A condition on a buffered write, with its own names and values.
#[derive(Debug, Clone, Default)]
struct Condition {
    expression: String,
    names: HashMap<String, String>,
    values: Item,
}

impl Condition {
    fn new(expression: &str) -> Condition {
        Condition {
            expression: expression.into(),
            ..Condition::default()
        }
    }

    fn name(mut self, placeholder: &str, name: &str) -> Condition {
        self.names.insert(placeholder.into(), name.into());
        self
    }

    fn value(mut self, placeholder: &str, value: AttributeValue) -> Condition {
        self.values.insert(placeholder.into(), value);
        self
    }

    /// The item does not exist yet.
    fn absent() -> Condition {
        Condition::new("attribute_not_exists(#pk)").name("#pk", "pk")
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(Item),
    Update {
        set: Vec<(String, AttributeValue)>,
        add: Vec<(String, i64)>,
    },
    Delete,
}

#[derive(Debug, Clone)]
struct Buffered {
    table: String,
    key: Item,
    op: Op,
    condition: Option<Condition>,
}

/// A chain's head as the transaction found it and as it leaves it.
#[derive(Debug, Clone)]
struct Head {
    found_seq: Option<i64>,
    seq: i64,
    hash: String,
}

pub struct DynamoBackend {
    client: Client,
    state: String,
    audit: String,
    runtime: tokio::runtime::Handle,
    event_ttl: Duration,
    /// Mutations reserved by this process, by the id handed out for them.
    reservations: Mutex<HashMap<i64, Vec<Item>>>,
    next_reservation: AtomicI64,
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
            reservations: Mutex::new(HashMap::new()),
            next_reservation: AtomicI64::new(1),
        }
    }

    pub fn tables(&self) -> (&str, &str) {
        (&self.state, &self.audit)
    }

    /// Runs a DynamoDB call from the synchronous store interface.
    fn wait<F: Future>(&self, future: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(current)
                if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(|| self.runtime.block_on(future))
            }
            _ => self.runtime.block_on(future),
        }
    }

    pub fn write<T>(
        &self,
        work: &dyn Fn(&dyn Writes) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
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

    pub fn read<T>(
        &self,
        work: &dyn Fn(&dyn Reads) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        work(self)
    }

    fn get(&self, table: &str, item_key: Item) -> Result<Option<Item>, AuditError> {
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

    fn get_state(&self, pk: &str, sk: &str) -> Result<Option<Item>, AuditError> {
        self.get(&self.state, key(pk, sk))
    }

    /// Every item a query matches, across pages.
    #[allow(clippy::too_many_arguments)]
    fn query(
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
    fn partition(&self, pk: &str, prefix: Option<&str>) -> Result<Vec<Item>, AuditError> {
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
    fn listed(&self, list: &str, limit: Option<usize>) -> Result<Vec<Item>, AuditError> {
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

    fn summary(&self, meta: &Item) -> Result<IncidentSummary, AuditError> {
        let id = text(meta, "incident_id").unwrap_or_default();
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
            outcome: text(meta, "outcome").unwrap_or_default(),
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
    fn summaries(&self, items: Vec<Item>) -> Result<Vec<IncidentSummary>, AuditError> {
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

    fn by_nodegroup(&self, key: &NodegroupKey) -> Result<Vec<Item>, AuditError> {
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

    fn by_subject(
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
    fn last_applied(&self, incidents: &[Item]) -> Result<Option<(String, String)>, AuditError> {
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

    fn chain_records(
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

fn nodegroup_index(key: &NodegroupKey) -> String {
    format!(
        "NG#{}/{}/{}/{}",
        key.account, key.region, key.cluster, key.nodegroup
    )
}

fn subject_index(account: &str, region: &str, subject: &str) -> String {
    format!("SUBJ#{account}/{region}/{subject}")
}

fn record_from_item(item: &Item) -> Result<Record, AuditError> {
    let body = text(item, "body").unwrap_or_else(|| "null".into());
    Ok(Record {
        seq: number(item, "seq").unwrap_or(0),
        at: text(item, "at").unwrap_or_default(),
        incident_id: text(item, "incident_id"),
        event_id: text(item, "event_id"),
        kind: text(item, "kind").unwrap_or_default(),
        body: serde_json::from_str(&body)?,
        prev_hash: text(item, "prev_hash").unwrap_or_default(),
        hash: text(item, "hash").unwrap_or_default(),
        chain: text(item, "chain").unwrap_or_default(),
    })
}

fn plan_from_item(item: &Item) -> Result<PlanRow, AuditError> {
    Ok(PlanRow {
        plan_id: text(item, "plan_id").unwrap_or_default(),
        incident_id: text(item, "incident_id").unwrap_or_default(),
        status: text(item, "status").unwrap_or_default(),
        created_at: text(item, "created_at").unwrap_or_default(),
        updated_at: text(item, "updated_at").unwrap_or_default(),
        plan: serde_json::from_str(&text(item, "plan").unwrap_or_else(|| "null".into()))?,
        trigger: serde_json::from_str(&text(item, "trigger").unwrap_or_else(|| "null".into()))?,
        decided_by: text(item, "decided_by"),
        decided_at: text(item, "decided_at"),
        decision_reason: text(item, "decision_reason"),
        cluster: text(item, "cluster").unwrap_or_default(),
        nodegroup: text(item, "nodegroup").unwrap_or_default(),
        cause: text(item, "cause").unwrap_or_default(),
    })
}

/// The loose chain of a record of no incident: by day, spread over shards by event id.
fn loose_chain(event_id: Option<&str>, day: &str) -> String {
    let shard = match event_id {
        Some(id) => {
            let digest = <sha2::Sha256 as sha2::Digest>::digest(id.as_bytes());
            u64::from(digest[0]) % LOOSE_SHARDS
        }
        None => (uuid::Uuid::new_v4().as_u128() % u128::from(LOOSE_SHARDS)) as u64,
    };
    format!("loose/{day}/{shard}")
}

impl Reads for DynamoBackend {
    fn event_seen(&self, event_id: &str) -> Result<Option<EventSeen>, AuditError> {
        Ok(self
            .get_state(&format!("EVT#{event_id}"), "EVT")?
            .map(|item| EventSeen {
                disposition: text(&item, "disposition").unwrap_or_default(),
                incident_id: text(&item, "incident_id"),
            }))
    }

    fn list(&self, limit: usize) -> Result<Vec<IncidentSummary>, AuditError> {
        let items = self.listed("INCIDENTS", Some(limit))?;
        let mut found = self.summaries(items)?;
        found.sort_by(|a, b| {
            b.opened_at
                .cmp(&a.opened_at)
                .then(b.incident_id.cmp(&a.incident_id))
        });
        Ok(found)
    }

    fn incident(&self, incident_id: &str) -> Result<Option<IncidentSummary>, AuditError> {
        match self.get_state(&format!("INC#{incident_id}"), "META")? {
            Some(meta) => Ok(Some(self.summary(&meta)?)),
            None => Ok(None),
        }
    }

    fn incident_subject(&self, incident_id: &str) -> Result<Option<String>, AuditError> {
        Ok(self
            .get_state(&format!("INC#{incident_id}"), "META")?
            .and_then(|meta| text(&meta, "subject")))
    }

    fn incidents_for_subject(
        &self,
        account: &str,
        region: &str,
        cause: &str,
        subject: &str,
    ) -> Result<Vec<IncidentSummary>, AuditError> {
        let items = self
            .by_subject(account, region, subject)?
            .into_iter()
            .filter(|item| text(item, "cause").as_deref() == Some(cause))
            .collect();
        self.summaries(items)
    }

    fn last_fix_on_subject(
        &self,
        account: &str,
        region: &str,
        subject: &str,
    ) -> Result<Option<(String, String)>, AuditError> {
        let incidents = self.by_subject(account, region, subject)?;
        self.last_applied(&incidents)
    }

    fn incident_nodegroups(&self, incident_id: &str) -> Result<Vec<String>, AuditError> {
        Ok(self
            .partition(&format!("INC#{incident_id}"), Some("NG#"))?
            .iter()
            .filter_map(|item| text(item, "sk"))
            .map(|sk| sk.trim_start_matches("NG#").to_string())
            .collect())
    }

    fn incidents_for(
        &self,
        key: &NodegroupKey,
        cause: &str,
    ) -> Result<Vec<IncidentSummary>, AuditError> {
        let items = self
            .by_nodegroup(key)?
            .into_iter()
            .filter(|item| text(item, "cause").as_deref() == Some(cause))
            .collect();
        self.summaries(items)
    }

    fn incidents_of_nodegroup(
        &self,
        key: &NodegroupKey,
        limit: usize,
    ) -> Result<Vec<IncidentSummary>, AuditError> {
        let mut items = self.by_nodegroup(key)?;
        items.truncate(limit);
        self.summaries(items)
    }

    fn last_fix_applied(&self, key: &NodegroupKey) -> Result<Option<(String, String)>, AuditError> {
        let incidents = self.by_nodegroup(key)?;
        self.last_applied(&incidents)
    }

    fn records(&self, incident_id: &str) -> Result<Vec<Record>, AuditError> {
        self.chain_records(incident_id, true, None)
    }

    fn loose_records(&self, limit: usize) -> Result<Vec<Record>, AuditError> {
        let today = time::OffsetDateTime::now_utc().date();
        let mut found = Vec::new();
        for back in 0..LOOSE_DAYS {
            let day = today - time::Duration::days(back);
            for shard in 0..LOOSE_SHARDS {
                found.extend(self.chain_records(
                    &format!("loose/{day}/{shard}"),
                    false,
                    Some(limit),
                )?);
            }
            if found.len() >= limit {
                break;
            }
        }
        found.sort_by(|a, b| b.at.cmp(&a.at));
        found.truncate(limit);
        Ok(found)
    }

    fn all_records(&self, _after_seq: i64) -> Result<Vec<Record>, AuditError> {
        let mut chains: Vec<String> = self
            .listed("CHAINS", None)?
            .iter()
            .filter_map(|item| text(item, "chain"))
            .collect();
        chains.sort();
        let mut records = Vec::new();
        for chain in chains {
            records.extend(self.chain_records(&chain, true, None)?);
        }
        Ok(records)
    }

    fn verify_chain(&self) -> Result<Result<u64, ChainBreak>, AuditError> {
        let mut count = 0;
        for head in self.listed("CHAINS", None)? {
            let Some(chain) = text(&head, "chain") else {
                continue;
            };
            let broken = |seq: i64, why: &str| ChainBreak {
                chain: chain.clone(),
                seq,
                why: why.into(),
            };
            // The head item is read again from the table: the index may lag.
            let Some(head) = self.get_state(&format!("CHAIN#{chain}"), "HEAD")? else {
                continue;
            };
            let mut expected_prev = GENESIS.to_string();
            let mut expected_seq = 1;
            for record in self.chain_records(&chain, true, None)? {
                if record.seq != expected_seq {
                    return Ok(Err(broken(
                        record.seq,
                        "a record is missing before this one",
                    )));
                }
                if record.prev_hash != expected_prev {
                    return Ok(Err(broken(
                        record.seq,
                        "prev_hash does not match the previous record",
                    )));
                }
                let body = serde_json::to_string(&record.body)?;
                if chain_hash(
                    &record.prev_hash,
                    &record.at,
                    record.incident_id.as_deref(),
                    record.event_id.as_deref(),
                    &record.kind,
                    &body,
                ) != record.hash
                {
                    return Ok(Err(broken(
                        record.seq,
                        "hash does not match the record's content",
                    )));
                }
                expected_prev = record.hash;
                expected_seq += 1;
                count += 1;
            }
            // Deleting the newest records would leave a valid prefix: the head says how far it goes.
            if number(&head, "seq") != Some(expected_seq - 1)
                || text(&head, "hash").as_deref() != Some(expected_prev.as_str())
            {
                return Ok(Err(broken(
                    expected_seq,
                    "the chain ends before its head: records were removed",
                )));
            }
        }
        Ok(Ok(count))
    }

    fn plans(&self, status: Option<PlanStatus>) -> Result<Vec<PlanRow>, AuditError> {
        let statuses: Vec<PlanStatus> = match status {
            Some(status) => vec![status],
            None => PlanStatus::ALL.to_vec(),
        };
        let mut plans = Vec::new();
        for status in statuses {
            for item in self.listed(&format!("PLANS#{}", status.as_str()), None)? {
                // The index may lag: the table has the truth.
                if let Some(id) = text(&item, "plan_id")
                    && let Some(item) = self.get_state(&format!("PLAN#{id}"), "PLAN")?
                    && text(&item, "status").as_deref() == Some(status.as_str())
                {
                    plans.push(plan_from_item(&item)?);
                }
            }
        }
        plans.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        Ok(plans)
    }

    fn plan(&self, plan_id: &str) -> Result<Option<PlanRow>, AuditError> {
        self.get_state(&format!("PLAN#{plan_id}"), "PLAN")?
            .map(|item| plan_from_item(&item))
            .transpose()
    }

    fn kill_switch(&self) -> Result<Option<KillSwitch>, AuditError> {
        Ok(self
            .get_state(KILL_SWITCH, "CTRL")?
            .filter(|item| text(item, "value").as_deref() == Some("on"))
            .map(|item| KillSwitch {
                set_by: text(&item, "set_by"),
                at: text(&item, "at").unwrap_or_default(),
                reason: text(&item, "reason"),
            }))
    }

    fn mutations_since(&self, account: &str, since: &str) -> Result<u32, AuditError> {
        Ok(self
            .query(
                &self.state,
                None,
                "#pk = :pk AND #sk >= :since",
                &[("#pk", "pk"), ("#sk", "sk")],
                &[(":pk", s(format!("MUT#{account}"))), (":since", s(since))],
                true,
                None,
            )?
            .len() as u32)
    }

    fn last_mutation(
        &self,
        resource: &str,
        fix: &str,
    ) -> Result<Option<(String, String)>, AuditError> {
        Ok(self
            .query(
                &self.state,
                None,
                "#pk = :pk",
                &[("#pk", "pk")],
                &[(":pk", s(format!("MUTR#{resource}#{fix}")))],
                false,
                Some(1),
            )?
            .first()
            .map(|item| {
                (
                    text(item, "at").unwrap_or_default(),
                    text(item, "incident_id").unwrap_or_default(),
                )
            }))
    }

    fn open_breakers(&self, scopes: &[String]) -> Result<Vec<String>, AuditError> {
        let mut open = Vec::new();
        for scope in scopes {
            if self
                .get_state(&format!("BRK#{scope}"), "BRK")?
                .is_some_and(|item| text(&item, "state").as_deref() == Some("open"))
            {
                open.push(scope.clone());
            }
        }
        Ok(open)
    }

    fn breakers(&self) -> Result<Vec<Breaker>, AuditError> {
        let mut breakers: Vec<Breaker> = self
            .listed("BREAKERS", None)?
            .iter()
            .map(|item| Breaker {
                scope: text(item, "scope").unwrap_or_default(),
                state: text(item, "state").unwrap_or_default(),
                opened_at: text(item, "opened_at").unwrap_or_default(),
                reason: text(item, "reason").unwrap_or_default(),
                closed_at: text(item, "closed_at"),
                closed_by: text(item, "closed_by"),
            })
            .collect();
        breakers.sort_by(|a, b| b.opened_at.cmp(&a.opened_at));
        Ok(breakers)
    }

    fn lease(&self, lease_key: &str) -> Result<Option<Lease>, AuditError> {
        Ok(self
            .get_state(&format!("LEASE#{lease_key}"), "LEASE")?
            .map(|item| Lease {
                key: lease_key.to_string(),
                holder: text(&item, "holder").unwrap_or_default(),
                expires_at_ms: number(&item, "expires_at_ms").unwrap_or(0),
            }))
    }
}

/// One write transaction: direct reads, buffered writes, one conditional commit.
struct DynamoTx<'a> {
    backend: &'a DynamoBackend,
    buffer: RefCell<Vec<Buffered>>,
    heads: RefCell<HashMap<String, Head>>,
    /// Reservations released by this transaction, forgotten once it commits.
    released: RefCell<Vec<i64>>,
}

impl DynamoTx<'_> {
    fn state_table(&self) -> String {
        self.backend.state.clone()
    }

    /// Adds a write, merged with an earlier write of the same item (a transaction may touch an
    /// item once). The first condition stands: it is what the transaction read.
    fn push(&self, table: String, item_key: Item, op: Op, condition: Option<Condition>) {
        let mut buffer = self.buffer.borrow_mut();
        if let Some(existing) = buffer
            .iter_mut()
            .find(|b| b.table == table && b.key == item_key)
        {
            existing.op = match (std::mem::replace(&mut existing.op, Op::Delete), op) {
                (Op::Put(mut item), Op::Update { set, add }) => {
                    for (name, value) in set {
                        item.insert(name, value);
                    }
                    for (name, delta) in add {
                        let current = number(&item, &name).unwrap_or(0);
                        item.insert(name, n(current + delta));
                    }
                    Op::Put(item)
                }
                (
                    Op::Update { mut set, mut add },
                    Op::Update {
                        set: more_set,
                        add: more_add,
                    },
                ) => {
                    for (name, value) in more_set {
                        set.retain(|(existing, _)| existing != &name);
                        set.push((name, value));
                    }
                    add.extend(more_add);
                    Op::Update { set, add }
                }
                (_, later) => later,
            };
            if existing.condition.is_none() {
                existing.condition = condition;
            }
            return;
        }
        buffer.push(Buffered {
            table,
            key: item_key,
            op,
            condition,
        });
    }

    fn put(&self, item: Item, condition: Option<Condition>) {
        let item_key = key(
            &text(&item, "pk").unwrap_or_default(),
            &text(&item, "sk").unwrap_or_default(),
        );
        self.push(self.state_table(), item_key, Op::Put(item), condition);
    }

    fn update(
        &self,
        pk: &str,
        sk: &str,
        set: Vec<(&str, AttributeValue)>,
        condition: Option<Condition>,
    ) {
        let set = set.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        self.push(
            self.state_table(),
            key(pk, sk),
            Op::Update {
                set,
                add: Vec::new(),
            },
            condition,
        );
    }

    fn delete(&self, pk: &str, sk: &str, condition: Option<Condition>) {
        self.push(self.state_table(), key(pk, sk), Op::Delete, condition);
    }

    /// An item as this transaction leaves it: the table's, with buffered writes applied.
    fn current(&self, pk: &str, sk: &str) -> Result<Option<Item>, AuditError> {
        let item_key = key(pk, sk);
        let buffered = self
            .buffer
            .borrow()
            .iter()
            .find(|b| b.table == self.backend.state && b.key == item_key)
            .map(|b| b.op.clone());
        match buffered {
            Some(Op::Put(item)) => Ok(Some(item)),
            Some(Op::Delete) => Ok(None),
            Some(Op::Update { set, add }) => {
                let mut item = self
                    .backend
                    .get_state(pk, sk)?
                    .unwrap_or_else(|| key(pk, sk));
                for (name, value) in set {
                    item.insert(name, value);
                }
                for (name, delta) in add {
                    let current = number(&item, &name).unwrap_or(0);
                    item.insert(name, n(current + delta));
                }
                Ok(Some(item))
            }
            None => self.backend.get_state(pk, sk),
        }
    }

    fn head(&self, chain: &str) -> Result<Head, AuditError> {
        if let Some(head) = self.heads.borrow().get(chain) {
            return Ok(head.clone());
        }
        let found = self.backend.get_state(&format!("CHAIN#{chain}"), "HEAD")?;
        let head = match found {
            Some(item) => Head {
                found_seq: number(&item, "seq"),
                seq: number(&item, "seq").unwrap_or(0),
                hash: text(&item, "hash").unwrap_or_else(|| GENESIS.into()),
            },
            None => Head {
                found_seq: None,
                seq: 0,
                hash: GENESIS.into(),
            },
        };
        Ok(head)
    }

    fn commit(&self) -> Result<(), AuditError> {
        let mut items: Vec<TransactWriteItem> = Vec::new();
        for buffered in self.buffer.borrow().iter() {
            items.push(transact_item(buffered)?);
        }
        for (chain, head) in self.heads.borrow().iter() {
            let mut item = key(&format!("CHAIN#{chain}"), "HEAD");
            item.insert("chain".into(), s(chain.clone()));
            item.insert("seq".into(), n(head.seq));
            item.insert("hash".into(), s(head.hash.clone()));
            item.insert("gsi3pk".into(), s("CHAINS"));
            item.insert("gsi3sk".into(), s(chain.clone()));
            // Another writer appended to this chain since it was read: run again.
            let condition = match head.found_seq {
                Some(seq) => Condition::new("#seq = :seq")
                    .name("#seq", "seq")
                    .value(":seq", n(seq)),
                None => Condition::absent(),
            };
            items.push(transact_item(&Buffered {
                table: self.backend.state.clone(),
                key: key(&format!("CHAIN#{chain}"), "HEAD"),
                op: Op::Put(item),
                condition: Some(condition),
            })?);
        }
        if items.is_empty() {
            return Ok(());
        }
        if items.len() > 100 {
            return Err(AuditError::Backend(format!(
                "one transaction would write {} items; DynamoDB takes at most 100",
                items.len()
            )));
        }
        let sent = self.backend.wait(
            self.backend
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send(),
        );
        match sent {
            Ok(_) => {
                if let Ok(mut reservations) = self.backend.reservations.lock() {
                    for id in self.released.borrow().iter() {
                        reservations.remove(id);
                    }
                }
                Ok(())
            }
            Err(error) => {
                let conflict = error
                    .as_service_error()
                    .and_then(|e| match e {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                            Some(cancelled.cancellation_reasons().iter().any(|r| {
                                matches!(r.code(), Some("ConditionalCheckFailed" | "TransactionConflict"))
                            }))
                        }
                        _ => None,
                    })
                    .unwrap_or(false);
                if conflict {
                    Err(AuditError::Conflict)
                } else {
                    Err(sdk_error(error))
                }
            }
        }
    }
}

fn transact_item(buffered: &Buffered) -> Result<TransactWriteItem, AuditError> {
    let condition = buffered.condition.clone().unwrap_or_default();
    let mut names = condition.names.clone();
    let mut values = condition.values.clone();
    let optional = |map: HashMap<String, AttributeValue>| (!map.is_empty()).then_some(map);
    let expression = (!condition.expression.is_empty()).then(|| condition.expression.clone());
    match &buffered.op {
        Op::Put(item) => {
            let put = Put::builder()
                .table_name(&buffered.table)
                .set_item(Some(item.clone()))
                .set_condition_expression(expression)
                .set_expression_attribute_names((!names.is_empty()).then_some(names))
                .set_expression_attribute_values(optional(values))
                .build()
                .map_err(backend_error)?;
            Ok(TransactWriteItem::builder().put(put).build())
        }
        Op::Delete => {
            let delete = Delete::builder()
                .table_name(&buffered.table)
                .set_key(Some(buffered.key.clone()))
                .set_condition_expression(expression)
                .set_expression_attribute_names((!names.is_empty()).then_some(names))
                .set_expression_attribute_values(optional(values))
                .build()
                .map_err(backend_error)?;
            Ok(TransactWriteItem::builder().delete(delete).build())
        }
        Op::Update { set, add } => {
            let mut clauses = Vec::new();
            let mut sets = Vec::new();
            for (index, (name, value)) in set.iter().enumerate() {
                names.insert(format!("#u{index}"), name.clone());
                values.insert(format!(":u{index}"), value.clone());
                sets.push(format!("#u{index} = :u{index}"));
            }
            if !sets.is_empty() {
                clauses.push(format!("SET {}", sets.join(", ")));
            }
            let mut adds = Vec::new();
            for (index, (name, delta)) in add.iter().enumerate() {
                names.insert(format!("#a{index}"), name.clone());
                values.insert(format!(":a{index}"), n(*delta));
                adds.push(format!("#a{index} :a{index}"));
            }
            if !adds.is_empty() {
                clauses.push(format!("ADD {}", adds.join(", ")));
            }
            let update = Update::builder()
                .table_name(&buffered.table)
                .set_key(Some(buffered.key.clone()))
                .update_expression(clauses.join(" "))
                .set_condition_expression(expression)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(optional(values))
                .build()
                .map_err(backend_error)?;
            Ok(TransactWriteItem::builder().update(update).build())
        }
    }
}

impl Writes for DynamoTx<'_> {
    fn reads(&self) -> &dyn Reads {
        self.backend
    }

    fn append(
        &self,
        incident_id: Option<&str>,
        event_id: Option<&str>,
        kind: RecordKind,
        body: &Value,
    ) -> Result<i64, AuditError> {
        let at = now();
        let chain = match incident_id {
            Some(id) => id.to_string(),
            None => loose_chain(event_id, at.get(..10).unwrap_or("")),
        };
        let mut body_text = serde_json::to_string(body)?;
        if body_text.len() > MAX_BODY {
            body_text = serde_json::to_string(&serde_json::json!({
                "truncated": true,
                "original_bytes": body_text.len(),
                "excerpt": body_text.chars().take(MAX_BODY / 2).collect::<String>(),
            }))?;
        }
        let mut head = self.head(&chain)?;
        let seq = head.seq + 1;
        let hash = chain_hash(
            &head.hash,
            &at,
            incident_id,
            event_id,
            kind.as_str(),
            &body_text,
        );
        let mut item: Item = HashMap::from([
            ("chain".to_string(), s(chain.clone())),
            ("seq".to_string(), n(seq)),
            ("at".to_string(), s(at)),
            ("kind".to_string(), s(kind.as_str())),
            ("body".to_string(), s(body_text)),
            ("prev_hash".to_string(), s(head.hash.clone())),
            ("hash".to_string(), s(hash.clone())),
        ]);
        if let Some(id) = incident_id {
            item.insert("incident_id".into(), s(id));
        }
        if let Some(id) = event_id {
            item.insert("event_id".into(), s(id));
        }
        let record_key = HashMap::from([
            ("chain".to_string(), s(chain.clone())),
            ("seq".to_string(), n(seq)),
        ]);
        self.push(
            self.backend.audit.clone(),
            record_key,
            Op::Put(item),
            Some(Condition::new("attribute_not_exists(#c)").name("#c", "chain")),
        );
        head.seq = seq;
        head.hash = hash;
        self.heads.borrow_mut().insert(chain, head);
        Ok(seq)
    }

    fn mark_event(
        &self,
        event_id: &str,
        message_id: Option<&str>,
        disposition: &str,
        incident_id: Option<&str>,
    ) -> Result<(), AuditError> {
        let pk = format!("EVT#{event_id}");
        if self.current(&pk, "EVT")?.is_some() {
            return Ok(());
        }
        let expires = time::OffsetDateTime::now_utc().unix_timestamp()
            + self.backend.event_ttl.as_secs() as i64;
        let mut item = key(&pk, "EVT");
        item.insert("disposition".into(), s(disposition));
        item.insert("received_at".into(), s(now()));
        item.insert("expires_at".into(), n(expires));
        if let Some(id) = message_id {
            item.insert("message_id".into(), s(id));
        }
        if let Some(id) = incident_id {
            item.insert("incident_id".into(), s(id));
            self.push(
                self.state_table(),
                key(&format!("INC#{id}"), "META"),
                Op::Update {
                    set: Vec::new(),
                    add: vec![("events".into(), 1)],
                },
                None,
            );
        }
        // The first disposition wins, across replicas too.
        self.put(item, Some(Condition::absent()));
        Ok(())
    }

    fn open_incident(
        &self,
        incident_id: &str,
        key_: &NodegroupKey,
        cause: &str,
        subject: Option<&str>,
        mode: &str,
        summary: &str,
    ) -> Result<(), AuditError> {
        let at = now();
        let mut item = key(&format!("INC#{incident_id}"), "META");
        for (name, value) in [
            ("incident_id", incident_id),
            ("account", &key_.account),
            ("region", &key_.region),
            ("cluster", &key_.cluster),
            ("nodegroup", &key_.nodegroup),
            ("cause", cause),
            ("mode", mode),
            ("outcome", Outcome::InProgress.as_str()),
            ("summary", summary),
            ("opened_at", &at),
            ("updated_at", &at),
        ] {
            item.insert(name.into(), s(value));
        }
        item.insert("events".into(), n(0));
        item.insert("gsi1pk".into(), s(nodegroup_index(key_)));
        item.insert("gsi1sk".into(), s(at.clone()));
        item.insert("gsi3pk".into(), s("INCIDENTS"));
        item.insert("gsi3sk".into(), s(format!("{at}#{incident_id}")));
        if let Some(subject) = subject {
            item.insert("subject".into(), s(subject));
            item.insert(
                "gsi2pk".into(),
                s(subject_index(&key_.account, &key_.region, subject)),
            );
            item.insert("gsi2sk".into(), s(at.clone()));
        }
        self.put(item, Some(Condition::absent()));
        self.join_nodegroup(incident_id, &key_.cluster, &key_.nodegroup)
    }

    fn join_nodegroup(
        &self,
        incident_id: &str,
        cluster: &str,
        nodegroup: &str,
    ) -> Result<(), AuditError> {
        self.put(
            key(
                &format!("INC#{incident_id}"),
                &format!("NG#{cluster}/{nodegroup}"),
            ),
            None,
        );
        Ok(())
    }

    fn set_outcome(
        &self,
        incident_id: &str,
        mode: &str,
        outcome: Outcome,
    ) -> Result<(), AuditError> {
        let pk = format!("INC#{incident_id}");
        let Some(meta) = self.current(&pk, "META")? else {
            return Err(AuditError::NoSuchIncident(incident_id.into()));
        };
        let at = now();
        let mut set = vec![
            ("mode", s(mode)),
            ("outcome", s(outcome.as_str())),
            ("updated_at", s(at.clone())),
            ("gsi1sk", s(at.clone())),
        ];
        if meta.contains_key("gsi2pk") {
            set.push(("gsi2sk", s(at)));
        }
        self.update(&pk, "META", set, None);
        Ok(())
    }

    fn set_plan(
        &self,
        incident_id: &str,
        plan_id: &str,
        steps: &[(String, String, String)],
    ) -> Result<(), AuditError> {
        let pk = format!("INC#{incident_id}");
        let at = now();
        self.update(
            &pk,
            "META",
            vec![("plan_id", s(plan_id)), ("updated_at", s(at.clone()))],
            None,
        );
        for existing in self.backend.partition(&pk, Some("STEP#"))? {
            if let Some(sk) = text(&existing, "sk") {
                self.delete(&pk, &sk, None);
            }
        }
        for (position, (kind, status, detail)) in steps.iter().enumerate() {
            let mut item = key(&pk, &format!("STEP#{position:04}"));
            item.insert("kind".into(), s(kind.clone()));
            item.insert("status".into(), s(status.clone()));
            item.insert("detail".into(), s(detail.clone()));
            item.insert("updated_at".into(), s(at.clone()));
            self.put(item, None);
        }
        Ok(())
    }

    fn set_step(
        &self,
        incident_id: &str,
        position: usize,
        status: &str,
        detail: &str,
    ) -> Result<(), AuditError> {
        let pk = format!("INC#{incident_id}");
        let sk = format!("STEP#{position:04}");
        // As in SQL, a step that does not exist is not created.
        if self.current(&pk, &sk)?.is_none() {
            return Ok(());
        }
        self.update(
            &pk,
            &sk,
            vec![
                ("status", s(status)),
                ("detail", s(detail)),
                ("updated_at", s(now())),
            ],
            None,
        );
        Ok(())
    }

    fn register_plan(
        &self,
        incident_id: &str,
        plan_id: &str,
        plan: &Value,
        trigger: &Value,
    ) -> Result<bool, AuditError> {
        let at = now();
        let pk = format!("PLAN#{plan_id}");
        let before = self.current(&pk, "PLAN")?;
        let waiting = PlanStatus::AwaitingApproval.as_str();
        for other in self.backend.listed(&format!("PLANS#{waiting}"), None)? {
            if text(&other, "incident_id").as_deref() == Some(incident_id)
                && text(&other, "plan_id").as_deref() != Some(plan_id)
                && let Some(other_id) = text(&other, "plan_id")
            {
                self.update(
                    &format!("PLAN#{other_id}"),
                    "PLAN",
                    status_fields(PlanStatus::Superseded, &at),
                    None,
                );
            }
        }
        let meta = self
            .current(&format!("INC#{incident_id}"), "META")?
            .unwrap_or_default();
        let mut item = key(&pk, "PLAN");
        item.insert("plan_id".into(), s(plan_id));
        item.insert("incident_id".into(), s(incident_id));
        item.insert("plan".into(), s(serde_json::to_string(plan)?));
        item.insert("trigger".into(), s(serde_json::to_string(trigger)?));
        for field in ["cluster", "nodegroup", "cause"] {
            item.insert(field.into(), s(text(&meta, field).unwrap_or_default()));
        }
        for (name, value) in status_fields(PlanStatus::AwaitingApproval, &at) {
            item.insert(name.into(), value);
        }
        match before.as_ref().and_then(|b| text(b, "status")) {
            None => {
                item.insert("created_at".into(), s(at));
                self.put(item, Some(Condition::absent()));
                Ok(true)
            }
            Some(status) if PlanStatus::settled(&status) => {
                // The latest event of the same incident is what an approval re-collects for.
                if status == waiting
                    && before
                        .as_ref()
                        .and_then(|b| text(b, "incident_id"))
                        .as_deref()
                        == Some(incident_id)
                {
                    self.update(
                        &pk,
                        "PLAN",
                        vec![
                            ("updated_at", s(at)),
                            ("trigger", s(serde_json::to_string(trigger)?)),
                        ],
                        None,
                    );
                }
                Ok(false)
            }
            Some(_) => {
                let created = before
                    .as_ref()
                    .and_then(|b| text(b, "created_at"))
                    .unwrap_or_else(|| at.clone());
                item.insert("created_at".into(), s(created));
                self.put(item, None);
                Ok(true)
            }
        }
    }

    fn set_plan_status(
        &self,
        plan_id: &str,
        status: PlanStatus,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), AuditError> {
        let pk = format!("PLAN#{plan_id}");
        if self.current(&pk, "PLAN")?.is_none() {
            return Ok(());
        }
        let at = now();
        let mut set = status_fields(status, &at);
        if status.is_decision() {
            set.push(("decided_at", s(at)));
            set.push((
                "decided_by",
                by.map(s).unwrap_or(AttributeValue::Null(true)),
            ));
            set.push((
                "decision_reason",
                reason.map(s).unwrap_or(AttributeValue::Null(true)),
            ));
        }
        self.update(&pk, "PLAN", set, None);
        Ok(())
    }

    fn set_kill_switch(
        &self,
        on: bool,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), AuditError> {
        let mut item = key(KILL_SWITCH, "CTRL");
        item.insert("value".into(), s(if on { "on" } else { "off" }));
        item.insert("at".into(), s(now()));
        if let Some(by) = by {
            item.insert("set_by".into(), s(by));
        }
        if let Some(reason) = reason {
            item.insert("reason".into(), s(reason));
        }
        self.put(item, None);
        Ok(())
    }

    fn reserve_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
        since: &str,
        limit: u32,
    ) -> Result<Option<i64>, AuditError> {
        // Reservations of one account are serialised on its rate item, so that replicas
        // counting at once cannot all pass the limit.
        let rate_pk = format!("RATE#{account}");
        let version = self
            .backend
            .get_state(&rate_pk, "RATE")?
            .and_then(|item| number(&item, "version"));
        if self.backend.mutations_since(account, since)? >= limit {
            return Ok(None);
        }
        let mut rate = key(&rate_pk, "RATE");
        rate.insert("version".into(), n(version.unwrap_or(0) + 1));
        let condition = match version {
            Some(v) => Condition::new("#v = :v")
                .name("#v", "version")
                .value(":v", n(v)),
            None => Condition::absent(),
        };
        self.put(rate, Some(condition));
        let keys = self.mutation_items(account, resource, fix, incident_id);
        let id = self
            .backend
            .next_reservation
            .fetch_add(1, Ordering::Relaxed);
        if let Ok(mut reservations) = self.backend.reservations.lock() {
            reservations.insert(id, keys);
        }
        Ok(Some(id))
    }

    fn release_mutation(&self, seq: i64) -> Result<(), AuditError> {
        let keys = self
            .backend
            .reservations
            .lock()
            .ok()
            .and_then(|r| r.get(&seq).cloned())
            .unwrap_or_default();
        for item_key in keys {
            let pk = text(&item_key, "pk").unwrap_or_default();
            let sk = text(&item_key, "sk").unwrap_or_default();
            self.delete(&pk, &sk, None);
        }
        self.released.borrow_mut().push(seq);
        Ok(())
    }

    fn record_mutation(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
    ) -> Result<(), AuditError> {
        self.mutation_items(account, resource, fix, incident_id);
        Ok(())
    }

    fn record_breaker_failure(
        &self,
        scopes: &[String],
        incident_id: &str,
        reason: &str,
        threshold_for: &dyn Fn(&str) -> u32,
        window_start: &str,
    ) -> Result<Vec<String>, AuditError> {
        let at = now();
        let mut opened = Vec::new();
        for scope in scopes {
            let failure_sk = format!("{at}#{}", uuid::Uuid::new_v4().simple());
            let mut failure = key(&format!("BRKF#{scope}"), &failure_sk);
            failure.insert("incident_id".into(), s(incident_id));
            failure.insert("reason".into(), s(reason));
            failure.insert(
                "expires_at".into(),
                n(time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 86_400),
            );
            self.put(failure, None);
            let breaker = self.current(&format!("BRK#{scope}"), "BRK")?;
            if breaker
                .as_ref()
                .is_some_and(|b| text(b, "state").as_deref() == Some("open"))
            {
                continue;
            }
            let forgiven = breaker
                .as_ref()
                .and_then(|b| text(b, "forgiven_through"))
                .unwrap_or_default();
            let earlier = self
                .backend
                .query(
                    &self.backend.state,
                    None,
                    "#pk = :pk AND #sk >= :start",
                    &[("#pk", "pk"), ("#sk", "sk")],
                    &[
                        (":pk", s(format!("BRKF#{scope}"))),
                        (":start", s(window_start)),
                    ],
                    true,
                    None,
                )?
                .iter()
                .filter(|f| text(f, "sk").is_some_and(|sk| sk > forgiven))
                .count() as u32;
            // The failure just buffered is not in the table yet.
            let failures = earlier + 1;
            if failures >= threshold_for(scope) {
                let mut item = key(&format!("BRK#{scope}"), "BRK");
                item.insert("scope".into(), s(scope.clone()));
                item.insert("state".into(), s("open"));
                item.insert("opened_at".into(), s(at.clone()));
                item.insert(
                    "reason".into(),
                    s(format!(
                        "{failures} failures since {window_start}: {reason}"
                    )),
                );
                item.insert("forgiven_through".into(), s(forgiven));
                item.insert("gsi3pk".into(), s("BREAKERS"));
                item.insert("gsi3sk".into(), s(at.clone()));
                self.put(item, None);
                opened.push(scope.clone());
            }
        }
        Ok(opened)
    }

    fn reset_breaker(&self, scope: &str, by: &str) -> Result<bool, AuditError> {
        let pk = format!("BRK#{scope}");
        let Some(breaker) = self.current(&pk, "BRK")? else {
            return Ok(false);
        };
        if text(&breaker, "state").as_deref() != Some("open") {
            return Ok(false);
        }
        let last_failure = self
            .backend
            .query(
                &self.backend.state,
                None,
                "#pk = :pk",
                &[("#pk", "pk")],
                &[(":pk", s(format!("BRKF#{scope}")))],
                false,
                Some(1),
            )?
            .first()
            .and_then(|f| text(f, "sk"))
            .unwrap_or_default();
        self.update(
            &pk,
            "BRK",
            vec![
                ("state", s("closed")),
                ("closed_at", s(now())),
                ("closed_by", s(by)),
                ("forgiven_through", s(last_failure)),
            ],
            None,
        );
        Ok(true)
    }

    fn acquire_lease(
        &self,
        lease_key: &str,
        holder: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<bool, AuditError> {
        let pk = format!("LEASE#{lease_key}");
        let found = self.backend.get_state(&pk, "LEASE")?;
        let condition = match &found {
            None => Condition::absent(),
            Some(item) => {
                let current_holder = text(item, "holder").unwrap_or_default();
                let expires = number(item, "expires_at_ms").unwrap_or(0);
                if current_holder != holder && expires > now_ms {
                    return Ok(false);
                }
                // Still as read: nobody else took it in between.
                Condition::new("#h = :h AND #e = :e")
                    .name("#h", "holder")
                    .name("#e", "expires_at_ms")
                    .value(":h", s(current_holder))
                    .value(":e", n(expires))
            }
        };
        let mut item = key(&pk, "LEASE");
        item.insert("holder".into(), s(holder));
        item.insert("expires_at_ms".into(), n(expires_at_ms));
        item.insert("expires_at".into(), n(expires_at_ms / 1000 + 3600));
        self.put(item, Some(condition));
        Ok(true)
    }

    fn release_lease(&self, lease_key: &str, holder: &str) -> Result<(), AuditError> {
        let pk = format!("LEASE#{lease_key}");
        if self
            .backend
            .get_state(&pk, "LEASE")?
            .is_some_and(|item| text(&item, "holder").as_deref() == Some(holder))
        {
            self.delete(
                &pk,
                "LEASE",
                Some(
                    Condition::new("#h = :h")
                        .name("#h", "holder")
                        .value(":h", s(holder)),
                ),
            );
        }
        Ok(())
    }
}

impl DynamoTx<'_> {
    /// Buffers the two items of one mutation (by account, for the rate limit; by resource, for
    /// the cooldown); returns their keys.
    fn mutation_items(
        &self,
        account: &str,
        resource: &str,
        fix: &str,
        incident_id: &str,
    ) -> Vec<Item> {
        let at = now();
        let sk = format!("{at}#{}", uuid::Uuid::new_v4().simple());
        let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 7 * 86_400;
        let mut keys = Vec::new();
        for pk in [format!("MUT#{account}"), format!("MUTR#{resource}#{fix}")] {
            let mut item = key(&pk, &sk);
            item.insert("at".into(), s(at.clone()));
            item.insert("incident_id".into(), s(incident_id));
            item.insert("resource".into(), s(resource));
            item.insert("fix".into(), s(fix));
            item.insert("expires_at".into(), n(expires));
            self.put(item, None);
            keys.push(key(&pk, &sk));
        }
        keys
    }
}

fn status_fields(status: PlanStatus, at: &str) -> Vec<(&'static str, AttributeValue)> {
    vec![
        ("status", s(status.as_str())),
        ("updated_at", s(at)),
        ("gsi3pk", s(format!("PLANS#{}", status.as_str()))),
        ("gsi3sk", s(at)),
    ]
}

/// Creates the two tables (on demand billing, TTL, point-in-time recovery) unless they exist.
pub async fn create_tables(client: &Client, state: &str, audit: &str) -> Result<(), AuditError> {
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .map_err(backend_error)
    };
    let key_element = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(backend_error)
    };
    let index = |name: &str, pk: &str, sk: &str| -> Result<GlobalSecondaryIndex, AuditError> {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key_element(pk, KeyType::Hash)?)
            .key_schema(key_element(sk, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(backend_error)
    };
    let existing = client
        .list_tables()
        .send()
        .await
        .map_err(sdk_error)?
        .table_names()
        .to_vec();
    if !existing.iter().any(|t| t == state) {
        let mut request = client
            .create_table()
            .table_name(state)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key_element("pk", KeyType::Hash)?)
            .key_schema(key_element("sk", KeyType::Range)?);
        for name in [
            "pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk",
        ] {
            request = request.attribute_definitions(attribute(name, ScalarAttributeType::S)?);
        }
        request
            .global_secondary_indexes(index("gsi1", "gsi1pk", "gsi1sk")?)
            .global_secondary_indexes(index("gsi2", "gsi2pk", "gsi2sk")?)
            .global_secondary_indexes(index("gsi3", "gsi3pk", "gsi3sk")?)
            .send()
            .await
            .map_err(sdk_error)?;
        client
            .update_time_to_live()
            .table_name(state)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .map_err(backend_error)?,
            )
            .send()
            .await
            .map_err(sdk_error)?;
    }
    if !existing.iter().any(|t| t == audit) {
        client
            .create_table()
            .table_name(audit)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key_element("chain", KeyType::Hash)?)
            .key_schema(key_element("seq", KeyType::Range)?)
            .attribute_definitions(attribute("chain", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("seq", ScalarAttributeType::N)?)
            .send()
            .await
            .map_err(sdk_error)?;
    }
    for table in [state, audit] {
        client
            .update_continuous_backups()
            .table_name(table)
            .point_in_time_recovery_specification(
                aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(true)
                    .build()
                    .map_err(backend_error)?,
            )
            .send()
            .await
            .map_err(sdk_error)?;
    }
    Ok(())
}
