//! The cluster side: the kubeconfig read as kubectl reads it, and the two calls the commands make.

use agentgov_api::{Agent, AgentPromotion, PolicyBundle};
use http_body_util::BodyExt;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{Request, Status};
use kube::{Client, Config, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Error, Global};

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

/// The field manager of the plugin's writes (as `kubectl` is kubectl's).
pub const FIELD_MANAGER: &str = "kubectl-agentgov";

/// A client and the namespace the context names.
pub struct Cluster {
    client: Client,
    pub default_namespace: String,
}

/// Read the kubeconfig (`--kubeconfig`, else `$KUBECONFIG`'s files merged, else
/// `~/.kube/config`) with `--context`, impersonating `--as` (and `--as-group`) as kubectl does,
/// and build a client. Nothing is sent yet.
pub async fn connect(global: &Global) -> Result<Cluster, Error> {
    let file = match global.kubeconfig.as_deref() {
        Some(path) => Kubeconfig::read_from(path),
        None => Kubeconfig::read(),
    }
    .map_err(Error::Kubeconfig)?;
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(file, &options)
        .await
        .map_err(Error::Kubeconfig)?;
    // The flags replace what the kubeconfig's user says about impersonation, as in kubectl.
    if let Some(user) = &global.as_user {
        config.auth_info.impersonate = Some(user.clone());
        config.auth_info.impersonate_groups =
            (!global.as_group.is_empty()).then(|| global.as_group.clone());
    }
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(Error::Client)?;
    Ok(Cluster {
        client,
        default_namespace,
    })
}

impl Cluster {
    /// The client, for the calls a command makes itself (watches).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

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

    /// Every object of kind `K` (PolicyBundles, say) in `scope`, in one list call; `what`
    /// names them in errors.
    pub async fn list_of<K>(&self, scope: &Scope, what: &str) -> Result<Vec<K>, Error>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        self.list_selected(scope, what, None).await
    }

    /// [`Cluster::list_of`] with a label `selector` the API server applies.
    pub async fn list_selected<K>(
        &self,
        scope: &Scope,
        what: &str,
        selector: Option<&str>,
    ) -> Result<Vec<K>, Error>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let (api, namespace): (Api<K>, &str) = match scope {
            Scope::All => (Api::all(self.client.clone()), "every namespace"),
            Scope::One(ns) => (Api::namespaced(self.client.clone(), ns), ns.as_str()),
        };
        let mut params = ListParams::default();
        if let Some(selector) = selector {
            params = params.labels(selector);
        }
        api.list(&params).await.map(|list| list.items).map_err(|e| {
            Error::from_api(&format!("list {what} in {namespace}"), namespace, None, e)
        })
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

    /// The PolicyBundle `name` in `namespace`, if it exists.
    pub async fn get_bundle(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PolicyBundle>, Error> {
        let api: Api<PolicyBundle> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name)
            .await
            .map_err(|e| Error::from_api(&format!("get policybundle {name}"), namespace, None, e))
    }

    /// The cluster floor (ClusterPolicyBundle) `name`, if there is one the user may read (a
    /// cluster without the kind, or a user who may not read it, has none as far as they know).
    pub async fn get_floor(&self, name: &str) -> Option<agentgov_api::ClusterPolicyBundle> {
        let api: Api<agentgov_api::ClusterPolicyBundle> = Api::all(self.client.clone());
        api.get_opt(name).await.ok().flatten()
    }

    /// The AgentPromotions in `namespace` (every page).
    pub async fn promotions(&self, namespace: &str) -> Result<Vec<AgentPromotion>, Error> {
        let api: Api<AgentPromotion> = Api::namespaced(self.client.clone(), namespace);
        let action = format!("list agentpromotions in {namespace}");
        let mut params = ListParams::default().limit(500);
        let mut promotions = Vec::new();
        loop {
            let page = api
                .list(&params)
                .await
                .map_err(|e| Error::from_api(&action, namespace, None, e))?;
            promotions.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(promotions),
            }
        }
    }

    /// Who the API server takes this client for (a SelfSubjectReview; with `--as`, the user
    /// impersonated).
    pub async fn username(&self) -> Result<String, Error> {
        let api: Api<SelfSubjectReview> = Api::all(self.client.clone());
        let review = api
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .map_err(|e| Error::from_api("review who you are", "", None, e))?;
        Ok(review
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .unwrap_or_default())
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
        let body = serde_json::to_vec(object).map_err(|e| Error::Encode(e.to_string()))?;
        let params = PostParams {
            dry_run,
            ..PostParams::default()
        };
        let request = Request::new(K::url_path(&(), Some(namespace))).create(&params, body);
        self.send(request, namespace, None, action).await
    }

    /// Merge-patch the agent `name` in `namespace` (with `dryRun=All` when `dry_run`) under the
    /// field manager [`FIELD_MANAGER`]: only the fields `patch` names change. Admission's
    /// warnings are kept.
    pub async fn patch_agent(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
        dry_run: bool,
        action: &str,
    ) -> Result<Created<Agent>, Error> {
        let params = PatchParams {
            dry_run,
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        let request = Request::new(Agent::url_path(&(), Some(namespace))).patch(
            name,
            &params,
            &Patch::Merge(patch),
        );
        self.send(request, namespace, Some(name), action).await
    }

    /// Delete the agent `name` in `namespace` (with `dryRun=All` when `dry_run`).
    pub async fn delete_agent(
        &self,
        namespace: &str,
        name: &str,
        dry_run: bool,
        action: &str,
    ) -> Result<(), Error> {
        let api: Api<Agent> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            dry_run,
            ..DeleteParams::default()
        };
        api.delete(name, &params)
            .await
            .map(|_| ())
            .map_err(|e| Error::from_api(action, namespace, Some(name), e))
    }

    /// Send `request` and read the object it answers with, and the `Warning` headers.
    async fn send<K: DeserializeOwned>(
        &self,
        request: Result<hyper::Request<Vec<u8>>, kube::core::request::Error>,
        namespace: &str,
        name: Option<&str>,
        action: &str,
    ) -> Result<Created<K>, Error> {
        let failed = |e| Error::from_api(action, namespace, name, e);
        let request = request.map_err(|e| failed(kube::Error::BuildRequest(e)))?;
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
    fn as_and_as_group_read_like_kubectl() {
        use clap::Parser;
        let cli = crate::plugin::Cli::try_parse_from([
            "kubectl-agentgov",
            "approve",
            "auditor",
            "--as",
            "bob",
            "--as-group",
            "approvers",
            "--as-group",
            "auditors",
        ])
        .unwrap();
        assert_eq!(cli.global.as_user.as_deref(), Some("bob"));
        assert_eq!(cli.global.as_group, ["approvers", "auditors"]);
        // A group without a user is refused, as kubectl refuses it.
        let refused =
            crate::plugin::Cli::try_parse_from(["kubectl-agentgov", "list", "--as-group", "x"]);
        assert!(refused.is_err());
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
