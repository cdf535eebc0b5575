//! Who may ask `POST /v1/admit` (`--admit-clients`): the TLS handshake proves a client holds a
//! certificate from `--client-ca-file`, which the API server's own certificate comes from too;
//! this list says which of those certificates belong to orchestrators allowed to ask. Empty (the
//! default), nobody may: the endpoint answers 403 until an operator names its clients.
//!
//! An entry is one of:
//!
//! | entry | matches a client certificate whose |
//! |---|---|
//! | `CN=<name>` | subject has the common name `<name>` (exactly, case-sensitive) |
//! | `dns:<name>` | subject alternative names hold the DNS name `<name>` (ASCII case-insensitive, as DNS; a wildcard SAN is compared as written, not expanded) |
//! | `uri:<uri>` | subject alternative names hold the URI `<uri>` exactly (a SPIFFE ID, for one) |
//! | `*` | anything: every client the TLS port accepts (under `--client-auth none`, also one without a certificate) |
//!
//! The prefixes `CN=`, `dns:` and `uri:` are case-insensitive. The flag takes a comma-separated
//! list (so a name holding a comma cannot be listed); whitespace around an entry is ignored.

use std::fmt;
use std::str::FromStr;

use crate::peer::Identity;

/// One identity allowed to ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdmitClient {
    /// `*`: any client the TLS port accepts.
    Any,
    /// `CN=<name>`: a subject common name.
    CommonName(String),
    /// `dns:<name>`: a DNS subject alternative name.
    Dns(String),
    /// `uri:<uri>`: a URI subject alternative name.
    Uri(String),
}

/// Why an `--admit-clients` entry is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientsError {
    #[error(
        "--admit-clients entry {0:?} is none of CN=<common name>, dns:<DNS name>, uri:<URI>, *"
    )]
    Syntax(String),
    #[error("--admit-clients entry {0:?} names nothing after its prefix")]
    Empty(String),
}

/// How an entry is made from the value after its prefix.
type Make = fn(String) -> AdmitClient;

/// The prefixes of the entries that name an identity.
const KINDS: [(&str, Make); 3] = [
    ("CN=", AdmitClient::CommonName),
    ("dns:", AdmitClient::Dns),
    ("uri:", AdmitClient::Uri),
];

impl FromStr for AdmitClient {
    type Err = ClientsError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        if entry == "*" {
            return Ok(AdmitClient::Any);
        }
        for (prefix, kind) in KINDS {
            let Some(head) = entry.get(..prefix.len()) else {
                continue;
            };
            if head.eq_ignore_ascii_case(prefix) {
                let value = &entry[prefix.len()..];
                if value.trim().is_empty() {
                    return Err(ClientsError::Empty(entry.to_string()));
                }
                return Ok(kind(value.to_string()));
            }
        }
        Err(ClientsError::Syntax(entry.to_string()))
    }
}

impl fmt::Display for AdmitClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdmitClient::Any => f.write_str("*"),
            AdmitClient::CommonName(name) => write!(f, "CN={name}"),
            AdmitClient::Dns(name) => write!(f, "dns:{name}"),
            AdmitClient::Uri(uri) => write!(f, "uri:{uri}"),
        }
    }
}

impl AdmitClient {
    /// Whether a client that presented `identity` (none: no certificate) is this one.
    fn matches(&self, identity: Option<&Identity>) -> bool {
        let Some(identity) = identity else {
            return *self == AdmitClient::Any;
        };
        match self {
            AdmitClient::Any => true,
            AdmitClient::CommonName(name) => identity.common_names.iter().any(|cn| cn == name),
            AdmitClient::Dns(name) => identity
                .dns_names
                .iter()
                .any(|dns| dns.eq_ignore_ascii_case(name)),
            AdmitClient::Uri(uri) => identity.uris.iter().any(|u| u == uri),
        }
    }
}

/// The clients allowed to ask `POST /v1/admit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdmitClients {
    allowed: Vec<AdmitClient>,
}

impl AdmitClients {
    /// Parse the flag's entries; blank ones (an empty environment variable, a trailing comma)
    /// are skipped.
    pub fn parse<S: AsRef<str>>(
        entries: impl IntoIterator<Item = S>,
    ) -> Result<Self, ClientsError> {
        let allowed = entries
            .into_iter()
            .map(|entry| entry.as_ref().trim().to_string())
            .filter(|entry| !entry.is_empty())
            .map(|entry| entry.parse())
            .collect::<Result<_, _>>()?;
        Ok(AdmitClients { allowed })
    }

    /// Every client the TLS port accepts (`*`).
    pub fn any() -> Self {
        AdmitClients {
            allowed: vec![AdmitClient::Any],
        }
    }

    /// Whether nobody may ask.
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Whether a client that presented `identity` (none: no certificate) may ask.
    pub fn allows(&self, identity: Option<&Identity>) -> bool {
        self.allowed.iter().any(|client| client.matches(identity))
    }

    /// The entries, as the flag would give them (for the start-up log line).
    pub fn to_flag(&self) -> String {
        self.allowed
            .iter()
            .map(AdmitClient::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerCertificate;

    fn identity(cn: &[&str], dns: &[&str], uris: &[&str]) -> Identity {
        let owned = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        Identity {
            subject: String::new(),
            common_names: owned(cn),
            dns_names: owned(dns),
            uris: owned(uris),
        }
    }

    #[test]
    fn entries_parse_by_their_prefix() {
        let clients = AdmitClients::parse([
            "CN=orchestrator-1",
            " cn=batch ",
            "dns:nomad.acme.example",
            "URI:spiffe://acme.example/vm-scheduler",
            "*",
            "",
        ])
        .unwrap();
        assert_eq!(
            clients.allowed,
            [
                AdmitClient::CommonName("orchestrator-1".into()),
                AdmitClient::CommonName("batch".into()),
                AdmitClient::Dns("nomad.acme.example".into()),
                AdmitClient::Uri("spiffe://acme.example/vm-scheduler".into()),
                AdmitClient::Any,
            ]
        );
        assert_eq!(
            clients.to_flag(),
            "CN=orchestrator-1,CN=batch,dns:nomad.acme.example,uri:spiffe://acme.example/vm-scheduler,*"
        );
        // A value may hold '=' and ':' (only the prefix is read).
        assert_eq!(
            "CN=a=b:c".parse::<AdmitClient>(),
            Ok(AdmitClient::CommonName("a=b:c".into()))
        );
        assert!(
            AdmitClients::parse(Vec::<String>::new())
                .unwrap()
                .is_empty()
        );
        assert!(AdmitClients::parse([" ", ""]).unwrap().is_empty());
    }

    #[test]
    fn entries_that_name_nothing_or_no_kind_are_refused() {
        for (entry, expected) in [
            ("O=acme", ClientsError::Syntax("O=acme".into())),
            (
                "orchestrator-1",
                ClientsError::Syntax("orchestrator-1".into()),
            ),
            ("ip:10.0.0.1", ClientsError::Syntax("ip:10.0.0.1".into())),
            ("**", ClientsError::Syntax("**".into())),
            ("CN=", ClientsError::Empty("CN=".into())),
            ("dns: ", ClientsError::Empty("dns:".into())),
            ("uri:", ClientsError::Empty("uri:".into())),
        ] {
            assert_eq!(
                AdmitClients::parse(["CN=fine", entry]),
                Err(expected),
                "{entry:?}"
            );
        }
        let message = AdmitClients::parse(["O=acme"]).unwrap_err().to_string();
        assert!(message.contains("CN=<common name>"), "{message}");
    }

    #[test]
    fn a_client_is_allowed_by_a_listed_common_name_or_san() {
        let clients = AdmitClients::parse([
            "CN=orchestrator-1",
            "dns:nomad.acme.example",
            "uri:spiffe://acme.example/vm",
        ])
        .unwrap();
        // By common name: exactly, case-sensitive.
        assert!(clients.allows(Some(&identity(&["orchestrator-1"], &[], &[]))));
        assert!(!clients.allows(Some(&identity(&["Orchestrator-1"], &[], &[]))));
        assert!(!clients.allows(Some(&identity(&["orchestrator-10"], &[], &[]))));
        // By DNS name, in any case; a wildcard SAN is not expanded.
        assert!(clients.allows(Some(&identity(&[], &["NOMAD.acme.example"], &[]))));
        assert!(!clients.allows(Some(&identity(&[], &["*.acme.example"], &[]))));
        // By URI, exactly.
        assert!(clients.allows(Some(&identity(&[], &[], &["spiffe://acme.example/vm"]))));
        assert!(!clients.allows(Some(&identity(&[], &[], &["spiffe://acme.example/vm/2"]))));
        // A name in the wrong place does not count: a CN is no DNS SAN and the other way round.
        assert!(!clients.allows(Some(&identity(&["nomad.acme.example"], &[], &[]))));
        assert!(!clients.allows(Some(&identity(&[], &["orchestrator-1"], &[]))));
        // The API server's certificate, unlisted; no certificate at all.
        assert!(!clients.allows(Some(&identity(
            &["kube-apiserver-webhook-client"],
            &[],
            &[]
        ))));
        assert!(!clients.allows(None));
    }

    #[test]
    fn nobody_is_allowed_by_default_and_everybody_by_a_star() {
        let nobody = AdmitClients::default();
        assert!(!nobody.allows(Some(&identity(&["orchestrator-1"], &[], &[]))));
        assert!(!nobody.allows(None));
        let everybody = AdmitClients::any();
        assert!(everybody.allows(Some(&identity(&[], &[], &[]))));
        assert!(everybody.allows(None));
    }

    #[test]
    fn a_real_certificate_is_matched_by_what_it_holds() {
        let cert = crate::peer::test_certificate(&["nomad.acme.example"], &[]);
        let peer = PeerCertificate::of(Some(&[cert])).unwrap();
        let allows = |entry: &str| {
            AdmitClients::parse([entry])
                .unwrap()
                .allows(Some(peer.identity()))
        };
        assert!(allows("CN=orchestrator-1"));
        assert!(allows("dns:nomad.acme.example"));
        // The organization is not a common name.
        assert!(!allows("CN=acme"));
        assert!(!allows("dns:other.acme.example"));
    }
}
