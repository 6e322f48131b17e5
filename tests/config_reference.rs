//! The configuration reference, `docs/configuration.md`, is generated from
//! the clap definitions in `src/config.rs`, so it cannot drift from them.
//!
//! This test renders the reference from `Config::command()` (the same
//! `Command` that parses the flags and prints `--help`) and fails, showing
//! the difference, when the committed file is not exactly what it renders.
//! `UPDATE_CONFIG_REFERENCE=1 cargo test --test config_reference` rewrites
//! the file instead.

use std::fmt::Write as _;
use std::path::PathBuf;

use chat_server::config::Config;
use clap::{Arg, CommandFactory};

/// The committed reference, relative to the package root.
const REFERENCE: &str = "docs/configuration.md";

/// The variable that makes the test rewrite the reference instead of
/// comparing it.
const UPDATE: &str = "UPDATE_CONFIG_REFERENCE";

const REGENERATE: &str = "UPDATE_CONFIG_REFERENCE=1 cargo test --test config_reference";

#[test]
fn the_configuration_reference_matches_the_flags() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(REFERENCE);
    let rendered = render();

    if std::env::var_os(UPDATE).is_some_and(|value| !value.is_empty() && value != "0") {
        std::fs::write(&path, &rendered).expect("writing docs/configuration.md");
        return;
    }

    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != rendered {
        panic!(
            "{REFERENCE} is not what src/config.rs describes \
             (- committed, + generated from the clap definitions):\n\n{}\n\
             Regenerate it with `{REGENERATE}` and commit it.",
            line_diff(&committed, &rendered)
        );
    }
}

#[test]
fn every_documented_flag_has_an_environment_variable_and_a_meaning() {
    for arg in documented_arguments() {
        let flag = arg.get_id();
        assert!(arg.get_long().is_some(), "{flag} has no long flag");
        assert!(
            arg.get_env().is_some(),
            "{flag} has no environment variable"
        );
        assert!(meaning(&arg).is_some(), "{flag} has no doc comment");
    }
}

/// The arguments `--help` shows, in its order (flattened ones included),
/// without clap's own `--help` and `--version`.
fn documented_arguments() -> Vec<Arg> {
    let command = Config::command();
    command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
        .cloned()
        .collect()
}

/// The reference, in Markdown.
fn render() -> String {
    let mut out = String::new();
    out.push_str(
        "# Configuration reference\n\
         \n\
         <!-- Generated from the clap definitions in src/config.rs by\n\
         \x20    tests/config_reference.rs; do not edit by hand. Regenerate with\n\
         \x20    UPDATE_CONFIG_REFERENCE=1 cargo test --test config_reference -->\n\
         \n\
         Every flag can also be set by its environment variable; a flag given on\n\
         the command line wins over the variable. `chat-server --help` prints the\n\
         same list. Durations are written as `90s`, `15m`, `30days` and so on.\n\
         \n\
         | Flag | Environment variable | Default | Meaning |\n\
         |---|---|---|---|\n",
    );
    for arg in documented_arguments() {
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => format!("`-{short}`, `--{long}`"),
            (None, Some(long)) => format!("`--{long}`"),
            (Some(short), None) => format!("`-{short}`"),
            (None, None) => format!("`{}`", arg.get_id()),
        };
        let env = arg
            .get_env()
            .map(|env| format!("`{}`", env.to_string_lossy()))
            .unwrap_or_else(|| "none".into());
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| format!("`{}`", value.to_string_lossy()))
            .collect();
        let default = if defaults.is_empty() {
            "none".to_owned()
        } else {
            defaults.join(", ")
        };
        let mut meaning = meaning(&arg).unwrap_or_default().trim().to_owned();
        // clap drops the full stop that ends a one-sentence doc comment.
        if !meaning.ends_with(['.', '!', '?']) && !meaning.ends_with(".)") {
            meaning.push('.');
        }
        let choices: Vec<String> = if arg.get_action().takes_values() {
            arg.get_possible_values()
                .iter()
                .filter(|value| !value.is_hide_set())
                .map(|value| format!("`{}`", value.get_name()))
                .collect()
        } else {
            Vec::new()
        };
        if !choices.is_empty() {
            write!(meaning, " One of: {}.", choices.join(", ")).unwrap();
        }
        writeln!(out, "| {flag} | {env} | {default} | {} |", cell(&meaning)).unwrap();
    }
    out
}

/// The doc comment of an argument, all of it: clap keeps the first
/// paragraph as `help` and the whole comment as `long_help` when there is
/// more than one.
fn meaning(arg: &Arg) -> Option<String> {
    arg.get_long_help()
        .or(arg.get_help())
        .map(|help| help.to_string())
        .filter(|help| !help.trim().is_empty())
}

/// Text fit for one table cell: paragraphs joined, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The lines that differ between `old` and `new`, with a line of context
/// around each change (a longest-common-subsequence diff; the reference is
/// small).
fn line_diff(old: &str, new: &str) -> String {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    // common[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut lines: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            lines.push((' ', old[i]));
            i += 1;
            j += 1;
        } else if i < old.len() && (j == new.len() || common[i + 1][j] >= common[i][j + 1]) {
            lines.push(('-', old[i]));
            i += 1;
        } else {
            lines.push(('+', new[j]));
            j += 1;
        }
    }
    let changed = |k: usize| lines.get(k).is_some_and(|(mark, _)| *mark != ' ');
    let mut out = String::new();
    let mut skipped = false;
    for (k, (mark, line)) in lines.iter().enumerate() {
        let near = changed(k) || (k > 0 && changed(k - 1)) || changed(k + 1);
        if near {
            if skipped {
                out.push_str("  …\n");
            }
            writeln!(out, "{mark} {line}").unwrap();
            skipped = false;
        } else {
            skipped = true;
        }
    }
    out
}
