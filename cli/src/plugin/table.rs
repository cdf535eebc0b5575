//! Tables as `kubectl get` prints them: uppercase headers, columns padded with spaces (3 after
//! the widest cell, 10 wide at least, as kubectl's tabwriter), ages as kubectl words them.

use agentgov_api::Agent;
use jiff::Timestamp;

use super::filter::expires_at;

/// The agents as `kubectl get` would print them; the NAMESPACE column only with `-A`.
pub fn agents(agents: &[Agent], all_namespaces: bool, now: Timestamp) -> String {
    let mut headers = vec![
        "NAMESPACE",
        "NAME",
        "MODE",
        "ROLE",
        "STATUS",
        "EXPIRES",
        "AGE",
    ];
    if !all_namespaces {
        headers.remove(0);
    }
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|agent| {
            let mut row = Vec::with_capacity(headers.len());
            if all_namespaces {
                row.push(text(agent.metadata.namespace.as_deref()));
            }
            let spec = &agent.spec;
            let status = agent.status.as_ref().and_then(|s| s.governance_status);
            row.push(text(agent.metadata.name.as_deref()));
            row.push(mode(spec.mode).to_string());
            row.push(spec.role_class.as_str().to_string());
            row.push(text(status.map(|s| s.as_str())));
            row.push(expires_at(agent).map_or_else(none, |at| relative(at, now)));
            let created = agent.metadata.creation_timestamp.as_ref();
            row.push(created.map_or_else(unknown, |t| human_duration(now.duration_since(t.0))));
            row
        })
        .collect();
    render(&headers, &rows)
}

fn mode(mode: agentgov_api::agent::AgentMode) -> &'static str {
    match mode {
        agentgov_api::agent::AgentMode::Sandbox => "sandbox",
        agentgov_api::agent::AgentMode::Governed => "governed",
    }
}

fn none() -> String {
    "<none>".to_string()
}

fn unknown() -> String {
    "<unknown>".to_string()
}

fn text(value: Option<&str>) -> String {
    value.map_or_else(none, str::to_string)
}

/// `in 23h` for a time ahead, `5m ago` for one past.
pub fn relative(at: Timestamp, now: Timestamp) -> String {
    if at >= now {
        format!("in {}", human_duration(at.duration_since(now)))
    } else {
        format!("{} ago", human_duration(now.duration_since(at)))
    }
}

/// kubectl's `HumanDuration` (k8s.io/apimachinery/pkg/util/duration): `90s`, `5m30s`, `45m`,
/// `3h20m`, `23h`, `3d4h`, `60d`, `2y30d`, `9y`.
pub fn human_duration(duration: jiff::SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    let with = |big: i64, big_unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    if minutes < 10 {
        return with(minutes, "m", seconds % 60, "s");
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3_600;
    if hours < 8 {
        return with(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return with(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    if hours < 24 * 365 * 8 {
        return with(days / 365, "y", days % 365, "d");
    }
    format!("{}y", days / 365)
}

/// Columns padded like kubectl's tabwriter (minimum width 10, padding 3); the last column is
/// not padded. One line per row, each ending in a newline.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            out.push_str(cell);
            if i < last {
                let column = (width + 3).max(10);
                out.extend(std::iter::repeat_n(' ', column - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use agentgov_api::agent::GovernanceStatus;
    use jiff::SignedDuration;

    use super::*;
    use crate::plugin::fixtures::{NOW, at, governed, sandbox};

    #[test]
    fn durations_read_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (330, "5m30s"),
            (2_700, "45m"),
            (12_000, "3h20m"),
            (7 * 3_600, "7h"),
            (23 * 3_600 + 59 * 60, "23h"),
            (76 * 3_600, "3d4h"),
            (72 * 3_600, "3d"),
            (60 * 86_400, "60d"),
            ((2 * 365 + 30) * 86_400, "2y30d"),
            (9 * 365 * 86_400, "9y"),
        ];
        for (secs, text) in cases {
            assert_eq!(
                human_duration(SignedDuration::from_secs(secs)),
                text,
                "{secs}"
            );
        }
        assert_eq!(relative(at(NOW + 3_600 * 23), at(NOW)), "in 23h");
        assert_eq!(relative(at(NOW - 300), at(NOW)), "5m ago");
    }

    #[test]
    fn a_table_pads_its_columns() {
        let table = render(
            &["NAME", "STATUS"],
            &[
                vec!["a-rather-long-name".into(), "SANDBOX".into()],
                vec!["b".into(), "<none>".into()],
            ],
        );
        assert_eq!(
            table,
            "NAME                 STATUS\n\
             a-rather-long-name   SANDBOX\n\
             b                    <none>\n"
        );
        // Narrow columns are 10 wide.
        assert_eq!(render(&["A", "B"], &[]), "A         B\n");
    }

    #[test]
    fn agents_print_like_kubectl_get() {
        let list = [
            sandbox("team-a", "short", NOW - 60, 3_600),
            governed("team-a", "auditor", Some(GovernanceStatus::GovernedValid)),
        ];
        assert_eq!(
            agents(&list, false, at(NOW)),
            "NAME      MODE       ROLE         STATUS           EXPIRES   AGE\n\
             short     sandbox    ideation     SANDBOX          in 59m    60s\n\
             auditor   governed   compliance   GOVERNED_VALID   <none>    60m\n"
        );
        let all = agents(&list[..1], true, at(NOW));
        assert!(all.starts_with("NAMESPACE   NAME      MODE"), "{all}");
        assert!(all.contains("\nteam-a      short     sandbox"), "{all}");
    }
}
