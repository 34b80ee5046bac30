//! One write transaction: direct reads, buffered writes, one conditional TransactWriteItems.

use super::*;

/// A condition on a buffered write, with its own names and values.
#[derive(Debug, Clone, Default)]
pub(super) struct Condition {
    pub(super) expression: String,
    pub(super) names: HashMap<String, String>,
    pub(super) values: Item,
}

impl Condition {
    pub(super) fn new(expression: &str) -> Condition {
        Condition {
            expression: expression.into(),
            ..Condition::default()
        }
    }

    pub(super) fn name(mut self, placeholder: &str, name: &str) -> Condition {
        self.names.insert(placeholder.into(), name.into());
        self
    }

    pub(super) fn value(mut self, placeholder: &str, value: AttributeValue) -> Condition {
        self.values.insert(placeholder.into(), value);
        self
    }

    /// The item does not exist yet.
    pub(super) fn absent() -> Condition {
        Condition::new("attribute_not_exists(#pk)").name("#pk", "pk")
    }
}

#[derive(Debug, Clone)]
pub(super) enum Op {
    Put(Item),
    Update {
        set: Vec<(String, AttributeValue)>,
        add: Vec<(String, i64)>,
    },
    Delete,
    /// Writes nothing; the commit holds only while the condition does.
    Check,
}

#[derive(Debug, Clone)]
pub(super) struct Buffered {
    pub(super) table: String,
    pub(super) key: Item,
    pub(super) op: Op,
    pub(super) condition: Option<Condition>,
}

/// A chain's head as the transaction found it and as it leaves it.
#[derive(Debug, Clone)]
pub(super) struct Head {
    pub(super) found_seq: Option<i64>,
    pub(super) seq: i64,
    pub(super) hash: String,
}

/// One write transaction: direct reads, buffered writes, one conditional commit.
pub(super) struct DynamoTx<'a> {
    pub(super) backend: &'a DynamoBackend,
    pub(super) buffer: RefCell<Vec<Buffered>>,
    pub(super) heads: RefCell<HashMap<String, Head>>,
    /// Reservations released by this transaction, forgotten once it commits.
    pub(super) released: RefCell<Vec<i64>>,
}

impl DynamoTx<'_> {
    pub(super) fn state_table(&self) -> String {
        self.backend.state.clone()
    }

    /// Adds a write, merged with an earlier write of the same item (a transaction may touch an
    /// item once). The first condition stands: it is what the transaction read.
    pub(super) fn push(&self, table: String, item_key: Item, op: Op, condition: Option<Condition>) {
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
                // A check adds no write: the item's write stands, under the first condition.
                (earlier, Op::Check) => earlier,
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

    pub(super) fn put(&self, item: Item, condition: Option<Condition>) {
        let item_key = key(
            &text(&item, "pk").unwrap_or_default(),
            &text(&item, "sk").unwrap_or_default(),
        );
        self.push(self.state_table(), item_key, Op::Put(item), condition);
    }

    pub(super) fn update(
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

    pub(super) fn delete(&self, pk: &str, sk: &str, condition: Option<Condition>) {
        self.push(self.state_table(), key(pk, sk), Op::Delete, condition);
    }

    /// An item as this transaction leaves it: the table's, with buffered writes applied.
    pub(super) fn current(&self, pk: &str, sk: &str) -> Result<Option<Item>, AuditError> {
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
            Some(Op::Check) | None => self.backend.get_state(pk, sk),
        }
    }

    pub(super) fn head(&self, chain: &str) -> Result<Head, AuditError> {
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

    pub(super) fn commit(&self) -> Result<(), AuditError> {
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
                self.backend.reservations.forget(&self.released.borrow());
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

pub(super) fn transact_item(buffered: &Buffered) -> Result<TransactWriteItem, AuditError> {
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
        Op::Check => {
            let check = ConditionCheck::builder()
                .table_name(&buffered.table)
                .set_key(Some(buffered.key.clone()))
                .set_condition_expression(expression)
                .set_expression_attribute_names((!names.is_empty()).then_some(names))
                .set_expression_attribute_values(optional(values))
                .build()
                .map_err(backend_error)?;
            Ok(TransactWriteItem::builder().condition_check(check).build())
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

impl DynamoTx<'_> {
    /// The sort keys of the items this transaction puts in a partition of the state table.
    pub(super) fn buffered_keys(&self, pk: &str) -> impl Iterator<Item = String> {
        let state = self.backend.state.as_str();
        self.buffer
            .borrow()
            .iter()
            .filter(|b| b.table == state && matches!(b.op, Op::Put(_)))
            .filter(|b| text(&b.key, "pk").as_deref() == Some(pk))
            .filter_map(|b| text(&b.key, "sk"))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Buffers the two items of one mutation (by account, for the rate limit; by resource, for
    /// the cooldown); returns their keys.
    pub(super) fn mutation_items(&self, row: MutationRow) -> Vec<Item> {
        let MutationRow {
            account,
            resource,
            fix,
            incident_id,
        } = row;
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
