//! Builders for unit tests.

use crate::{
    api::{CredentialsSpec, DatabaseConnectionSpec, SecretKeysRef},
    settings::ConnectionSettings,
};

pub fn neo4j_spec(secret: &str) -> DatabaseConnectionSpec {
    DatabaseConnectionSpec {
        engine: "neo4j".into(),
        uri: "bolt://127.0.0.1:7687".into(),
        database: None,
        credentials: Some(CredentialsSpec {
            secret_ref: SecretKeysRef {
                name: secret.into(),
                username_key: "username".into(),
                password_key: "password".into(),
                namespace: None,
            },
        }),
        tls: None,
        pool: Default::default(),
        health_check: Default::default(),
        retry: Default::default(),
        suspend: false,
        schema: None,
        http: None,
        binding: None,
    }
}

pub fn neo4j_settings() -> ConnectionSettings {
    ConnectionSettings::from_spec(&neo4j_spec("creds")).expect("fixture spec is valid")
}

/// A PostgreSQL spec: the Neo4j one with the engine and URI swapped, so new spec fields need
/// no second edit here.
pub fn postgres_spec(secret: &str) -> DatabaseConnectionSpec {
    DatabaseConnectionSpec {
        engine: "postgres".into(),
        uri: "postgres://127.0.0.1:5432/app".into(),
        ..neo4j_spec(secret)
    }
}

pub fn postgres_settings() -> ConnectionSettings {
    ConnectionSettings::from_spec(&postgres_spec("creds")).expect("fixture spec is valid")
}
