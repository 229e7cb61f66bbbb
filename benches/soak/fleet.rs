//! The soak's connections: which login each uses, on which server, reached through a counting
//! proxy per server (so every login the operator attempts is counted), and which are meant to
//! fail.

use std::collections::{BTreeMap, BTreeSet};

use dbconn_operator::api::DatabaseConnection;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};

use crate::common::{TestEnv, apply, neo4j, postgres, proxy::CountingProxy, secret_yaml};

/// Connection objects created or deleted at once.
const CONCURRENCY: usize = 32;

/// Every connection's probe interval: short, so an hour holds many probes per connection.
pub const INTERVAL: &str = "10s";
/// The interval the "edited" fault switches to and back from.
pub const OTHER_INTERVAL: &str = "12s";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Server {
    Neo4j,
    Postgres,
    /// PostgreSQL through the test environment's PgBouncer.
    PgBouncer,
}

impl Server {
    pub const ALL: [Server; 3] = [Server::Neo4j, Server::Postgres, Server::PgBouncer];

    pub fn engine(self) -> &'static str {
        match self {
            Server::Neo4j => "neo4j",
            Server::Postgres | Server::PgBouncer => "postgres",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Server::Neo4j => "neo4j",
            Server::Postgres => "postgres",
            Server::PgBouncer => "pgbouncer",
        }
    }

    /// The loopback port the real server listens on.
    fn port(self) -> u16 {
        let env = TestEnv::get();
        match self {
            Server::Neo4j => env.neo4j_port(),
            Server::Postgres => postgres::port(),
            Server::PgBouncer => env.var("PGBOUNCER_PORT").parse().expect("PGBOUNCER_PORT"),
        }
    }
}

/// One Secret and the login it holds.
pub struct Login {
    pub secret: String,
    pub server: Server,
    pub user: String,
    /// The password the server accepts now.
    pub password: String,
    /// False for the logins whose Secret holds a wrong password on purpose: their connections
    /// must never be Ready.
    pub right: bool,
    /// The soak may change its password (the users and roles it created itself; not
    /// PgBouncer's, whose password list is a file).
    pub rotatable: bool,
}

pub struct Fleet {
    pub api: Api<DatabaseConnection>,
    pub secrets: Api<Secret>,
    ns: String,
    proxies: BTreeMap<Server, CountingProxy>,
    pub logins: Vec<Login>,
    /// Connection name → index in `logins`.
    pub members: BTreeMap<String, usize>,
    /// Connections whose spec has the other interval (see [`OTHER_INTERVAL`]).
    pub edited: BTreeSet<String>,
}

impl Fleet {
    /// Creates the logins on the servers, their Secrets and `count` connections:
    /// 40 % Neo4j (four users), 10 % PostgreSQL direct (two roles), 2 % with a wrong password
    /// (half each), the rest PostgreSQL through PgBouncer (the environment's login).
    pub async fn create(client: &Client, ns: &str, count: usize) -> Self {
        let mut proxies = BTreeMap::new();
        for server in Server::ALL {
            proxies.insert(server, CountingProxy::start(server.port()).await);
        }
        let env = TestEnv::get();
        let tag = format!("{:06x}", rand::random::<u32>() >> 8);
        let mut logins = Vec::new();
        for (server, prefix, users) in [(Server::Neo4j, "n", 4), (Server::Postgres, "p", 2)] {
            for i in 0..users {
                let user = format!("soak_{prefix}{i}_{tag}");
                let password = new_password();
                match server {
                    Server::Neo4j => neo4j::create_user(&user, &password).await,
                    _ => postgres::create_role(&user, &password).await,
                }
                logins.push(Login {
                    secret: format!("{prefix}{i}"),
                    server,
                    user,
                    password,
                    right: true,
                    rotatable: true,
                });
            }
        }
        logins.push(Login {
            secret: "b".into(),
            server: Server::PgBouncer,
            user: env.var("POSTGRES_USER").into(),
            password: env.var("POSTGRES_PASSWORD").into(),
            right: true,
            rotatable: false,
        });
        for (server, user) in [(Server::Neo4j, 0), (Server::Postgres, 4)] {
            logins.push(Login {
                secret: format!("wrong-{}", server.name()),
                server,
                user: logins[user].user.clone(),
                password: logins[user].password.clone(),
                right: false,
                rotatable: false,
            });
        }
        for login in &logins {
            let password = if login.right {
                login.password.clone()
            } else {
                format!("not-{}", login.password)
            };
            apply(ns, &secret_yaml(&login.secret, &login.user, &password));
        }

        let wrong = (count / 50).max(2);
        let (neo4j, direct) = (count * 40 / 100, count / 10);
        let sizes = [
            (0..4).map(|_| neo4j / 4).collect::<Vec<_>>(),
            vec![direct / 2; 2],
            vec![count - neo4j / 4 * 4 - direct / 2 * 2 - wrong],
            vec![wrong / 2, wrong - wrong / 2],
        ]
        .concat();
        let mut members = BTreeMap::new();
        for (login, size) in sizes.into_iter().enumerate() {
            for i in 0..size {
                members.insert(format!("{}-{i:04}", logins[login].secret), login);
            }
        }
        let fleet = Self {
            api: Api::namespaced(client.clone(), ns),
            secrets: Api::namespaced(client.clone(), ns),
            ns: ns.to_owned(),
            proxies,
            logins,
            members,
            edited: BTreeSet::new(),
        };
        let names: Vec<String> = fleet.members.keys().cloned().collect();
        fleet.create_connections(&names).await;
        fleet
    }

    /// Creates these connections as the fleet describes them.
    pub async fn create_connections(&self, names: &[String]) {
        stream::iter(names)
            .map(|name| async move {
                self.api
                    .create(&PostParams::default(), &self.connection(name))
                    .await
                    .unwrap_or_else(|e| panic!("create connection {name}: {e}"));
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<()>()
            .await;
    }

    /// Deletes these connections and waits until they are gone.
    pub async fn delete_connections(&self, names: &[String]) {
        stream::iter(names)
            .map(|name| async move {
                self.api
                    .delete(name, &DeleteParams::default())
                    .await
                    .unwrap_or_else(|e| panic!("delete connection {name}: {e}"));
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<()>()
            .await;
        for name in names {
            while self.api.get_opt(name).await.ok().flatten().is_some() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }

    /// The object the fleet describes for `name`.
    pub fn connection(&self, name: &str) -> DatabaseConnection {
        let login = &self.logins[self.members[name]];
        let interval = if self.edited.contains(name) {
            OTHER_INTERVAL
        } else {
            INTERVAL
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dbconn.dev/v1alpha1",
            "kind": "DatabaseConnection",
            "metadata": { "name": name, "labels": { "soak/login": login.secret } },
            "spec": {
                "engine": login.server.engine(),
                "uri": self.uri(login.server),
                "credentials": { "secretRef": { "name": login.secret } },
                "healthCheck": { "interval": interval },
            },
        }))
        .expect("a valid DatabaseConnection")
    }

    /// Replaces a connection's spec with the one the fleet describes; returns the new
    /// generation and the object's uid.
    pub async fn put_spec(&self, name: &str, uri: Option<&str>) -> (String, i64) {
        let mut spec = serde_json::to_value(&self.connection(name).spec).unwrap();
        if let Some(uri) = uri {
            spec["uri"] = uri.into();
        }
        let patched = self
            .api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .unwrap_or_else(|e| panic!("patch connection {name}: {e}"));
        (
            patched.metadata.uid.unwrap_or_default(),
            patched.metadata.generation.unwrap_or_default(),
        )
    }

    /// Writes `password` into a login's Secret; returns the Secret's new resourceVersion.
    pub async fn write_secret(&self, login: usize, password: &str) -> String {
        let secret = &self.logins[login].secret;
        let patch = serde_json::json!({ "stringData": { "password": password } });
        self.secrets
            .patch(secret, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_or_else(|e| panic!("write Secret {secret}: {e}"))
            .metadata
            .resource_version
            .unwrap_or_default()
    }

    /// Changes a login's password on its server (the soak's own users and roles only).
    pub async fn set_server_password(&mut self, login: usize, password: &str) {
        let login = &mut self.logins[login];
        match login.server {
            Server::Neo4j => neo4j::set_password(&login.user, password).await,
            Server::Postgres => postgres::set_password(&login.user, password).await,
            Server::PgBouncer => unreachable!("PgBouncer's login is never rotated"),
        }
        login.password = password.to_owned();
    }

    pub fn uri(&self, server: Server) -> String {
        self.uri_on(server, self.proxies[&server].port)
    }

    /// The URI of `server`'s kind with another port.
    pub fn uri_on(&self, server: Server, port: u16) -> String {
        match server {
            Server::Neo4j => format!("bolt://127.0.0.1:{port}"),
            _ => format!(
                "postgres://127.0.0.1:{port}/{}?sslmode=disable",
                TestEnv::get().var("POSTGRES_DB")
            ),
        }
    }

    /// The server a URI reaches, if it reaches one of the fleet's proxies.
    pub fn server_of(&self, uri: &str) -> Option<Server> {
        Server::ALL.into_iter().find(|s| self.uri(*s) == uri)
    }

    /// Connections the fleet means to be Ready.
    pub fn meant_ready(&self, name: &str) -> bool {
        self.members
            .get(name)
            .is_some_and(|&login| self.logins[login].right)
    }

    /// Connections (meant to be Ready) of the logins on these servers.
    pub fn on(&self, servers: &[Server]) -> Vec<String> {
        self.members
            .iter()
            .filter(|(name, login)| {
                servers.contains(&self.logins[**login].server) && self.meant_ready(name)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Connections of one login.
    pub fn of_login(&self, login: usize) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, l)| **l == login)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Connections accepted by all proxies so far: every login the operator attempted.
    pub fn connects(&self) -> u64 {
        self.proxies.values().map(|p| p.connections() as u64).sum()
    }

    /// As [`Fleet::connects`], by server.
    pub fn connects_by_server(&self) -> BTreeMap<Server, u64> {
        self.proxies
            .iter()
            .map(|(server, proxy)| (*server, proxy.connections() as u64))
            .collect()
    }

    /// Deletes what the soak created: connections, Secrets, users and roles.
    pub async fn remove(&self) {
        let all = ListParams::default();
        let _ = self
            .api
            .delete_collection(&DeleteParams::default(), &all)
            .await;
        let _ = self
            .secrets
            .delete_collection(&DeleteParams::default(), &all)
            .await;
        for login in self.logins.iter().filter(|l| l.rotatable) {
            let dropped = match login.server {
                Server::Neo4j => neo4j::drop_user(&login.user).await,
                _ => postgres::drop_role(&login.user).await,
            };
            if let Err(e) = dropped {
                eprintln!(
                    "soak: could not drop login {} ({e}); drop it by hand",
                    login.user
                );
            }
        }
        eprintln!("soak: removed what it created in namespace {}", self.ns);
    }
}

pub fn new_password() -> String {
    format!("soak-{:016x}", rand::random::<u64>())
}
