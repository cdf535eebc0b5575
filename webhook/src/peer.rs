//! Who is on the other end of a TLS connection: the leaf certificate a client presented
//! (verified by the handshake against `--client-ca-file`). The Kubernetes API server names its
//! requester inside each AdmissionReview; an orchestrator asking `POST /v1/admit` is known only
//! by its certificate: its subject names it in the decision log, its subject common names and
//! subject alternative names are what `--admit-clients` ([`crate::admit_clients`]) lists.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// A connection's client certificate, attached to the requests that ask who asked. Kept as DER
/// and parsed on first use, once per connection: most connections (the API server's) never need
/// it, and an orchestrator's keep-alive connection asks many times.
#[derive(Clone, Debug)]
pub struct PeerCertificate(Arc<Peer>);

#[derive(Debug)]
struct Peer {
    der: CertificateDer<'static>,
    identity: OnceLock<Identity>,
}

/// What a client certificate says of its holder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The subject, as `CN=orchestrator,O=acme` (RFC 4514 order, as x509-parser prints it).
    pub subject: String,
    /// The subject's common names (usually one).
    pub common_names: Vec<String>,
    /// The DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
    /// The URIs among the subject alternative names (a SPIFFE ID, for one).
    pub uris: Vec<String>,
}

/// The subject named for a certificate that does not parse (the handshake parsed it already, so
/// this is not expected; the request is then refused by every identity but `*`, not failed).
const UNREADABLE: &str = "<client certificate without a readable subject>";

impl Identity {
    /// Read a DER certificate. `None` when it does not parse.
    pub fn of_der(der: &[u8]) -> Option<Identity> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let common_names = subject
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_string)
            .collect();
        let mut identity = Identity {
            subject: subject.to_string(),
            common_names,
            ..Identity::default()
        };
        // A certificate whose SAN extension is malformed or repeated names no SAN: it can
        // still match by common name (the handshake accepted it), never by a SAN it garbles.
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => identity.dns_names.push(dns.to_string()),
                    GeneralName::URI(uri) => identity.uris.push(uri.to_string()),
                    _ => {}
                }
            }
        }
        Some(identity)
    }
}

impl PeerCertificate {
    /// The leaf of the chain a TLS connection's client presented, if it presented one.
    pub fn of(chain: Option<&[CertificateDer<'_>]>) -> Option<Self> {
        let leaf = chain?.first()?;
        Some(PeerCertificate(Arc::new(Peer {
            der: leaf.clone().into_owned(),
            identity: OnceLock::new(),
        })))
    }

    /// Who the certificate names (read on the first call).
    pub fn identity(&self) -> &Identity {
        self.0.identity.get_or_init(|| {
            Identity::of_der(self.0.der.as_ref()).unwrap_or_else(|| Identity {
                subject: UNREADABLE.to_string(),
                ..Identity::default()
            })
        })
    }

    /// The certificate's subject, for the decision log.
    pub fn subject(&self) -> String {
        self.identity().subject.clone()
    }
}

/// A self-signed client certificate for tests: CN `orchestrator-1`, O `acme`, the subject
/// alternative names `names` (DNS names or IP addresses) and `uris`.
#[cfg(test)]
pub(crate) fn test_certificate(names: &[&str], uris: &[&str]) -> CertificateDer<'static> {
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    for uri in uris {
        let uri = (*uri).try_into().unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(uri));
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "orchestrator-1");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "acme");
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_leaf_subject_and_its_names() {
        let leaf = test_certificate(
            &["orchestrator.acme.example", "127.0.0.1"],
            &["spiffe://acme.example/orchestrator"],
        );
        let other = rcgen::generate_simple_self_signed(vec!["ca".to_string()]).unwrap();
        let chain = [leaf, other.cert.der().clone()];
        let peer = PeerCertificate::of(Some(&chain)).unwrap();
        let subject = peer.subject();
        assert!(subject.contains("CN=orchestrator-1"), "{subject}");
        assert!(subject.contains("O=acme"), "{subject}");
        let identity = peer.identity();
        assert_eq!(identity.common_names, ["orchestrator-1"]);
        // The IP address SAN is neither a DNS name nor a URI.
        assert_eq!(identity.dns_names, ["orchestrator.acme.example"]);
        assert_eq!(identity.uris, ["spiffe://acme.example/orchestrator"]);
        assert!(PeerCertificate::of(None).is_none());
        assert!(PeerCertificate::of(Some(&[])).is_none());
    }

    #[test]
    fn a_certificate_that_does_not_parse_names_nobody() {
        let garbage = [CertificateDer::from(vec![0u8; 8])];
        let peer = PeerCertificate::of(Some(&garbage)).unwrap();
        assert!(peer.subject().contains("without a readable subject"));
        assert!(peer.identity().common_names.is_empty());
        assert!(peer.identity().dns_names.is_empty());
        assert!(peer.identity().uris.is_empty());
    }
}
