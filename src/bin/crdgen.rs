//! Prints the DatabaseConnection CRD: `cargo run --bin crdgen > crds/databaseconnections.dbconn.dev.yaml`.

fn main() {
    print!("{}", dbconn_operator::api::crd_yaml());
}
