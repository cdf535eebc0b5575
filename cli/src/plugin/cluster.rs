//! The cluster side: the kubeconfig read as kubectl reads it, and the two calls the commands make.

use std::path::Path;

use agentgov_api::Agent;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

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
    fn empty_answers_read_like_kubectl() {
        assert_eq!(
            Scope::One("team-a".into()).none_found(),
            "No resources found in team-a namespace."
        );
        assert_eq!(Scope::All.none_found(), "No resources found");
    }
}
