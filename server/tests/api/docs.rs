//! The documentation cannot drift from the code: the README's flag table against `hubbub --help`,
//! the metric table in `docs/operations.md` against a live `/metrics`, and the error-code and
//! close-code tables in `docs/protocol.md` against the shared crate.

use crate::helpers::*;
use hubbub_shared::{ErrorCode, close};
use std::collections::{BTreeMap, BTreeSet};

const README: &str = include_str!("../../../README.md");
const OPERATIONS: &str = include_str!("../../../docs/operations.md");
const PROTOCOL: &str = include_str!("../../../docs/protocol.md");

/// Words in backticks in `cell` that start with `prefix`.
fn ticked(cell: &str, prefix: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).filter(|w| w.starts_with(prefix)).map(str::to_owned).collect()
}

/// The cells of the markdown table rows of `doc` whose first cell starts with `first`.
fn rows<'a>(doc: &'a str, first: &str) -> Vec<Vec<&'a str>> {
    doc.lines()
        .filter(|l| l.starts_with(&format!("| {first}")))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect()
}

/// `hubbub --help`: each flag with its env variable and default.
fn help() -> BTreeMap<String, (Option<String>, Option<String>)> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubbub")).arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("--") {
            let name = format!("--{}", rest.split([' ', '<']).next().unwrap());
            flags.insert(name.clone(), (None, None));
            current = Some(name);
        } else if let (Some(flag), Some(env)) = (&current, line.strip_prefix("[env: ")) {
            flags.get_mut(flag).unwrap().0 = Some(env.trim_end_matches(['=', ']']).to_owned());
        } else if let (Some(flag), Some(default)) = (&current, line.strip_prefix("[default: ")) {
            flags.get_mut(flag).unwrap().1 = Some(default.trim_end_matches(']').to_owned());
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

#[test]
fn the_readme_flag_table_is_hubbub_help() {
    let help = help();
    let mut documented = BTreeSet::new();
    for row in rows(README, "`--") {
        let (flags, envs) = (ticked(row[0], "--"), ticked(row[1], "HUBBUB_"));
        assert_eq!(flags.len(), envs.len(), "one env variable per flag: {row:?}");
        for (flag, env) in flags.iter().zip(&envs) {
            let (help_env, help_default) = help.get(flag).unwrap_or_else(|| panic!("{flag} is not in `hubbub --help`"));
            assert_eq!(help_env.as_deref(), Some(env.as_str()), "{flag}'s env variable");
            if flags.len() == 1
                && let Some(default) = help_default
            {
                assert_eq!(row[2].trim_matches('`'), default, "{flag}'s default");
            }
            documented.insert(flag.clone());
        }
    }
    assert!(help.len() > 25 && documented.len() == help.len(), "parsed {} flags", help.len());
    let undocumented: Vec<_> = help.keys().filter(|f| !documented.contains(*f)).collect();
    assert!(undocumented.is_empty(), "flags missing from the README's table: {undocumented:?}");
    // the limits table of the operations guide names real flags only
    for row in rows(OPERATIONS, "") {
        for flag in row.get(1).map(|c| ticked(c, "--")).unwrap_or_default() {
            assert!(help.contains_key(&flag), "docs/operations.md names {flag}, which `hubbub --help` lacks");
        }
    }
}

#[tokio::test]
async fn the_metric_table_is_what_metrics_serves() {
    let app = spawn_app().await;
    let (status, _, body) = http_get(app.addr, "/metrics", &[]).await;
    assert_eq!(status, 200);
    let served: BTreeMap<String, String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect();
    let table = OPERATIONS.split("<!-- metrics -->").nth(1).unwrap().split("<!-- /metrics -->").next().unwrap();
    let documented: BTreeMap<String, String> = rows(table, "`hubbub_")
        .into_iter()
        .map(|row| (row[0].trim_matches('`').to_owned(), row[1].to_owned()))
        .collect();
    assert_eq!(documented, served, "docs/operations.md's metric table against /metrics");
}

#[test]
fn the_error_and_close_code_tables_are_the_shared_crates() {
    let all = ErrorCode::ALL;
    let section = |title: &str| PROTOCOL.split(title).nth(1).unwrap().split("\n## ").next().unwrap().to_owned();
    let errors = section("## Error codes");
    let documented: BTreeSet<String> = rows(&errors, "`").iter().flat_map(|row| ticked(row[0], "")).collect();
    let real: BTreeSet<String> = all.iter().map(|c| c.as_str().to_owned()).collect();
    assert_eq!(documented, real, "docs/protocol.md's error codes against ErrorCode");

    let closes = section("## Close codes");
    let documented: BTreeSet<u16> =
        closes.lines().filter_map(|l| l.strip_prefix("| ")?.split(' ').next()?.parse().ok()).collect();
    assert_eq!(documented, close::SENT.into_iter().collect(), "docs/protocol.md's close codes against close::SENT");
}
