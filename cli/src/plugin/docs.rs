//! `docs/cli.md`'s command reference, generated from the help texts so the page cannot drift
//! from the binary: the test fails when the committed page differs, and
//! `make cli-docs` (`AGENTGOV_WRITE_DOCS=1`) rewrites the generated part.

use clap::CommandFactory;

use super::Cli;

/// The line before the generated part of `docs/cli.md`.
const BEGIN: &str =
    "<!-- BEGIN GENERATED: `make cli-docs` writes this part from the help texts -->";
/// The line after it.
const END: &str = "<!-- END GENERATED -->";

/// The reference: for every command and subcommand, a heading and its `--help` output.
fn reference() -> String {
    let mut cli = Cli::command().term_width(100);
    cli.build();
    let mut text = String::new();
    section(&cli, &mut text);
    text
}

fn section(command: &clap::Command, text: &mut String) {
    let path = command
        .get_bin_name()
        .unwrap_or_else(|| command.get_name())
        .to_string();
    let help = command.clone().render_long_help().to_string();
    let help: Vec<&str> = help.lines().map(str::trim_end).collect();
    text.push_str(&format!(
        "\n### `{path}`\n\n```text\n{}\n```\n",
        help.join("\n").trim()
    ));
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        section(sub, text);
    }
}

/// `page` with its generated part replaced by `generated`; None when the markers are missing.
fn replace_generated(page: &str, generated: &str) -> Option<String> {
    let start = page.find(BEGIN)? + BEGIN.len();
    let end = page[start..].find(END)? + start;
    Some(format!(
        "{}\n{}\n{}",
        &page[..start],
        generated.trim(),
        &page[end..]
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn docs_cli_md_matches_the_help_texts() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md");
        let page = std::fs::read_to_string(&path).unwrap();
        let expected = replace_generated(&page, &reference())
            .unwrap_or_else(|| panic!("docs/cli.md lacks the lines {BEGIN} and {END}"));
        if std::env::var_os("AGENTGOV_WRITE_DOCS").is_some() {
            std::fs::write(&path, &expected).unwrap();
        } else {
            assert!(
                page == expected,
                "docs/cli.md's command reference differs from the help texts: run `make cli-docs`"
            );
        }
    }

    #[test]
    fn every_command_has_a_section_with_its_examples() {
        let text = reference();
        for command in ["list", "verify", "create", "promote"] {
            assert!(
                text.contains(&format!("### `kubectl agentgov {command}`")),
                "{command}"
            );
        }
        assert!(
            text.contains("Examples:\n  kubectl agentgov list -A"),
            "{text}"
        );
    }

    #[test]
    fn only_the_generated_part_is_replaced() {
        let page = format!("intro\n{BEGIN}\nold\n{END}\noutro\n");
        assert_eq!(
            replace_generated(&page, "new\n").unwrap(),
            format!("intro\n{BEGIN}\nnew\n{END}\noutro\n")
        );
        assert_eq!(replace_generated("no markers", "new"), None);
    }
}
