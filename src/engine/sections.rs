//! The optional spec sections that more than one engine could accept. An engine lists the ones
//! it acts on in its descriptor; the CRD refuses each of them for every other engine.

use super::descriptor::Section;

pub const DATABASE: Section = Section {
    field: "spec.database",
    path: ".database",
    present: "has(self.database)",
};

pub const SCHEMA_CONSTRAINTS: Section = Section {
    field: "spec.schema.constraints",
    path: ".schema.constraints",
    present: "has(self.schema) && has(self.schema.constraints) && size(self.schema.constraints) > 0",
};

pub const SCHEMA_INDEXES: Section = Section {
    field: "spec.schema.indexes",
    path: ".schema.indexes",
    present: "has(self.schema) && has(self.schema.indexes) && size(self.schema.indexes) > 0",
};

/// Neo4j's driver (neo4rs) cannot present a client certificate.
pub const CLIENT_CERT: Section = Section {
    field: "spec.tls.clientCertSecretRef",
    path: ".tls.clientCertSecretRef",
    present: "has(self.tls) && has(self.tls.clientCertSecretRef)",
};

pub const SCHEMA_EXTENSIONS: Section = Section {
    field: "spec.schema.extensions",
    path: ".schema.extensions",
    present: "has(self.schema) && has(self.schema.extensions) && size(self.schema.extensions) > 0",
};
