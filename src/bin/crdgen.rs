//! Prints the DatabaseConnection CRD: `cargo run --bin crdgen > crds/databaseconnections.dbconn.dev.yaml`.
//! `crdgen readme FILE` rewrites the engine table in FILE (the README) from the engines'
//! descriptions instead.

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => print!("{}", dbconn_operator::crd::yaml()),
        [command, file] if command == "readme" => {
            let readme = std::fs::read_to_string(file)?;
            let spliced = dbconn_operator::engine::readme::splice(&readme).ok_or_else(|| {
                std::io::Error::other(format!("{file} lacks the engines markers"))
            })?;
            std::fs::write(file, spliced)?;
        }
        _ => {
            eprintln!("usage: crdgen [readme README.md]");
            std::process::exit(2);
        }
    }
    Ok(())
}
