//! Table creation: on-demand billing, TTL, point-in-time recovery, the three indexes.

use super::*;

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
