//! The export's renderings for people: CSV (one row per agent) and a self-contained HTML page.
//! Both carry the document digest, so a reader can tie them to the JSON export; neither is
//! verified (`verify --export` checks the JSON only).

use std::fmt::Write as _;

use html_escape::encode_text;

use super::{AgentRecord, Export};
use crate::plugin::Error;

/// The CSV columns, in order.
pub const CSV_HEADERS: [&str; 20] = [
    "namespace",
    "name",
    "uid",
    "mode",
    "roleClass",
    "status",
    "specHash",
    "approvalsRequired",
    "approvedBy",
    "proofSpecHash",
    "proofPolicyHash",
    "keyId",
    "algorithm",
    "signedAt",
    "policyVersion",
    "policyHash",
    "denies",
    "warnings",
    "controls",
    "recordDigest",
];

/// One row per agent under [`CSV_HEADERS`], plus a final column `exportDigest`; lists are
/// joined with `; `. Quoting is the `csv` crate's (RFC 4180).
pub fn csv(export: &Export) -> Result<String, Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| Error::Encode(e.to_string());
    let mut headers = CSV_HEADERS.to_vec();
    headers.push("exportDigest");
    writer.write_record(&headers).map_err(failed)?;
    for record in &export.agents {
        let mut row = cells(record);
        row.push(export.digest.clone());
        writer.write_record(&row).map_err(failed)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::Encode(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| Error::Encode(e.to_string()))
}

/// A record's cells under [`CSV_HEADERS`] (the HTML table shows the same).
fn cells(r: &AgentRecord) -> Vec<String> {
    let proof = r.proof.as_ref();
    let approval = r.approval.as_ref();
    let policy = r.policy_in_force.as_ref();
    let controls: Vec<&str> = r
        .evidence
        .iter()
        .flat_map(|e| &e.controls)
        .map(String::as_str)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let text = |value: Option<&str>| value.unwrap_or_default().to_string();
    vec![
        r.namespace.clone(),
        r.name.clone(),
        r.uid.clone(),
        mode(r).to_string(),
        r.role_class.as_str().to_string(),
        text(r.status.map(|s| s.as_str())),
        r.spec_hash.clone(),
        approval.map_or_else(String::new, |a| a.required.to_string()),
        approval.map_or_else(String::new, |a| a.approved_by.join("; ")),
        text(proof.map(|p| p.spec_hash.as_str())),
        text(proof.map(|p| p.policy_hash.as_str())),
        text(proof.map(|p| p.key_id.as_str())),
        text(proof.map(|p| p.algorithm.as_str())),
        text(proof.map(|p| p.signed_at.as_str())),
        text(policy.map(|p| p.version.as_str())),
        text(policy.map(|p| p.hash.as_str())),
        r.denies.join("; "),
        r.warnings.join("; "),
        controls.join("; "),
        r.digest.clone(),
    ]
}

fn mode(r: &AgentRecord) -> &'static str {
    match r.mode {
        agentgov_api::agent::AgentMode::Sandbox => "sandbox",
        agentgov_api::agent::AgentMode::Governed => "governed",
    }
}

/// A self-contained HTML page: the export's header, one table of agents, the policy history
/// and the controls named. Every text from the export is escaped.
pub fn html(export: &Export) -> String {
    let mut page = String::new();
    let e = |text: &str| encode_text(text).into_owned();
    let title = format!("agentgov compliance export: {}", scope(&export.scope));
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(page, "<title>{}</title>", e(&title));
    page.push_str(
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}\
         th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top;font-size:13px}\
         th{background:#f3f3f3}code{font-size:12px}</style>\n</head>\n<body>\n",
    );
    let _ = writeln!(page, "<h1>{}</h1>", e(&title));
    page.push_str("<p>Generated ");
    let _ = write!(page, "{}", e(&export.generated_at));
    if let Some(since) = &export.since {
        let _ = write!(page, ", changes since {}", e(since));
    }
    let _ = writeln!(
        page,
        ". Export digest <code>{}</code>: verify the JSON export with <code>kubectl agentgov verify --export FILE</code>; this page is a rendering and is not verified.</p>",
        e(&export.digest)
    );
    page.push_str("<h2>Agents</h2>\n<table>\n<tr>");
    for header in CSV_HEADERS {
        let _ = write!(page, "<th>{}</th>", e(header));
    }
    page.push_str("</tr>\n");
    for record in &export.agents {
        page.push_str("<tr>");
        for cell in cells(record) {
            let _ = write!(page, "<td>{}</td>", e(&cell));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table>\n<h2>Policy history</h2>\n<table>\n");
    page.push_str("<tr><th>namespace</th><th>bundle</th><th>in force</th><th>version</th><th>hash</th><th>time</th><th>actor</th><th>reason</th></tr>\n");
    for policy in &export.policies {
        for version in &policy.history {
            let in_force = policy.active_hash.as_deref() == Some(version.hash.as_str());
            let row = [
                policy.namespace.as_str(),
                policy.name.as_str(),
                if in_force { "yes" } else { "" },
                version.version.as_str(),
                version.hash.as_str(),
                &version.time.0.to_string(),
                version.actor.as_deref().unwrap_or_default(),
                version.reason.as_str(),
            ]
            .map(e);
            let _ = writeln!(page, "<tr><td>{}</td></tr>", row.join("</td><td>"));
        }
    }
    page.push_str("</table>\n<h2>Facts</h2>\n<table>\n<tr><th>fact</th><th>holds when</th></tr>\n");
    for (fact, holds) in &export.facts {
        let _ = writeln!(page, "<tr><td>{}</td><td>{}</td></tr>", e(fact), e(holds));
    }
    page.push_str("</table>\n<h2>Controls</h2>\n<table>\n<tr><th>control</th><th>framework</th><th>title</th></tr>\n");
    for (id, control) in &export.controls {
        let framework = export
            .frameworks
            .get(&control.framework)
            .unwrap_or(&control.framework);
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(id),
            e(framework),
            e(&control.title)
        );
    }
    page.push_str("</table>\n</body>\n</html>\n");
    page
}

fn scope(scope: &str) -> String {
    if scope == "*" {
        "every namespace".to_string()
    } else {
        format!("namespace {scope}")
    }
}
