//! The cluster side: the kubeconfig read as kubectl reads it, and the two calls the commands make.

use std::path::Path;

use agentgov_api::{Agent, AgentPromotion};
use http_body_util::BodyExt;
use kube::api::{Api, ListParams, PostParams};
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{Request, Status};
use kube::{Client, Config, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;

/// Which namespaces a command covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    One(String),
}

impl Scope {
    /// `-A` wins over `-n`; without either, the context's namespace (kube falls back to
    /// `default` when the context names none).
    pub fn new(namespace: Option<&str>, all: bool, context_default: &str) -> Self {
        match (all, namespace) {
            (true, _) => Scope::All,
            (false, Some(ns)) => Scope::One(ns.to_string()),
            (false, None) => Scope::One(context_default.to_string()),
        }
    }

    /// kubectl's sentence for an empty answer.
    pub fn none_found(&self) -> String {
        match self {
            Scope::All => "No resources found".to_string(),
            Scope::One(ns) => format!("No resources found in {ns} namespace."),
        }
    }
}

/// A client and the namespace the context names.
pub struct Cluster {
    client: Client,
    pub default_namespace: String,
}

/// Read the kubeconfig (`--kubeconfig`, else `$KUBECONFIG`'s files merged, else
/// `~/.kube/config`) with `--context`, and build a client. Nothing is sent yet.
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Cluster, Error> {
    let file = match kubeconfig {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(Error::Kubeconfig)?;
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(file, &options)
        .await
        .map_err(Error::Kubeconfig)?;
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(Error::Client)?;
    Ok(Cluster {
        client,
        default_namespace,
    })
}

impl Cluster {
    /// The agents in `scope` matching the label `selector` (every page).
    pub async fn list(&self, scope: &Scope, selector: Option<&str>) -> Result<Vec<Agent>, Error> {
        let (api, namespace): (Api<Agent>, &str) = match scope {
            Scope::All => (Api::all(self.client.clone()), "every namespace"),
            Scope::One(ns) => (Api::namespaced(self.client.clone(), ns), ns.as_str()),
        };
        let mut params = ListParams::default().limit(500);
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        let action = format!("list agents in {namespace}");
        let mut agents = Vec::new();
        loop {
            let page = api
                .list(&params)
                .await
                .map_err(|e| Error::from_api(&action, namespace, None, e))?;
            agents.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(agents),
            }
        }
    }

    /// The agent `name` in `namespace`.
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Agent, Error> {
        let api: Api<Agent> = Api::namespaced(self.client.clone(), namespace);
        api.get(name)
            .await
            .map_err(|e| Error::from_api(&format!("get agent {name}"), namespace, Some(name), e))
    }
}

/// `--dry-run`, as kubectl spells it: `none` (the default) creates, `server` asks the API server
/// (and every admission check) without persisting, `client` prints what would be sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DryRun {
    #[default]
    None,
    Client,
    Server,
}

impl DryRun {
    /// What kubectl appends to `... created`: ` (dry run)` or ` (server dry run)`.
    pub fn suffix(self) -> &'static str {
        match self {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }
}

/// What the API server answered to a create: the object as stored (or as it would be, on a dry
/// run) and the `Warning` headers admission added (a webhook's warnings).
pub struct Created<K> {
    pub object: K,
    pub warnings: Vec<String>,
}

impl Cluster {
    /// The AgentPromotion `name` in `namespace`.
    pub async fn get_promotion(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<AgentPromotion, Error> {
        let api: Api<AgentPromotion> = Api::namespaced(self.client.clone(), namespace);
        api.get(name)
            .await
            .map_err(|e| Error::from_api(&format!("get agentpromotion {name}"), namespace, None, e))
    }

    /// Create `object` in `namespace` (with `dryRun=All` when `dry_run`), keeping the warnings
    /// the API server sends back, which `Api::create` drops. `action` names the call in errors.
    pub async fn create<K>(
        &self,
        namespace: &str,
        object: &K,
        dry_run: bool,
        action: &str,
    ) -> Result<Created<K>, Error>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let failed = |e| Error::from_api(action, namespace, None, e);
        let body = serde_json::to_vec(object).map_err(|e| Error::Encode(e.to_string()))?;
        let params = PostParams {
            dry_run,
            ..PostParams::default()
        };
        let request = Request::new(K::url_path(&(), Some(namespace)))
            .create(&params, body)
            .map_err(|e| failed(kube::Error::BuildRequest(e)))?;
        let response = self
            .client
            .send(request.map(Body::from))
            .await
            .map_err(failed)?;
        let code = response.status();
        let warnings = response
            .headers()
            .get_all("warning")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(warning_text)
            .collect();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(failed)?
            .to_bytes();
        if code.is_client_error() || code.is_server_error() {
            let status = serde_json::from_slice::<Status>(&bytes).unwrap_or_else(|_| {
                Status::failure(&String::from_utf8_lossy(&bytes), "").with_code(code.as_u16())
            });
            return Err(failed(kube::Error::Api(status.boxed())));
        }
        let object =
            serde_json::from_slice(&bytes).map_err(|e| failed(kube::Error::SerdeError(e)))?;
        Ok(Created { object, warnings })
    }
}

/// The text of a `Warning` header (`299 - "text"`, RFC 7234), unquoted.
pub fn warning_text(header: &str) -> String {
    let text = header
        .strip_prefix("299 - ")
        .or_else(|| header.split_once(" - ").map(|(_, rest)| rest))
        .unwrap_or(header);
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_namespaces_wins_then_the_flag_then_the_context() {
        assert_eq!(Scope::new(Some("a"), true, "ctx"), Scope::All);
        assert_eq!(Scope::new(Some("a"), false, "ctx"), Scope::One("a".into()));
        assert_eq!(Scope::new(None, false, "ctx"), Scope::One("ctx".into()));
    }

    #[test]
    fn warning_headers_are_unquoted() {
        assert_eq!(
            warning_text(r#"299 - "GOVERNED_RESTRICTED: budget \"high\"""#),
            r#"GOVERNED_RESTRICTED: budget "high""#
        );
        assert_eq!(warning_text("299 - plain"), "plain");
        assert_eq!(warning_text("odd"), "odd");
        assert_eq!(DryRun::Server.suffix(), " (server dry run)");
    }

    #[test]
    fn empty_answers_read_like_kubectl() {
        assert_eq!(
            Scope::One("team-a".into()).none_found(),
            "No resources found in team-a namespace."
        );
        assert_eq!(Scope::All.none_found(), "No resources found");
    }
}
