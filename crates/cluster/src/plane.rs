//! The node's management plane as the RPC port reaches it: the binary installs its
//! [`NodeAdmin`] and a metrics source once they exist (the RPC server starts earlier, for
//! formation), and `ControlService.NodeExec` / `NodeMetrics` call them for other nodes of the
//! cluster. Until something is installed those calls answer `UNIMPLEMENTED`, which the fan-out
//! reports as "unsupported" for that node.

use std::sync::{Arc, OnceLock};

use tonic::Status;

use crate::node_admin::{NodeAction, NodeActionError, NodeAdmin};

/// Renders this node's metrics in the Prometheus text format.
pub type MetricsSource = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Shared slots for the node's management plane; clones share the slots.
#[derive(Clone, Default)]
pub struct NodePlane {
    admin: Arc<OnceLock<Arc<dyn NodeAdmin>>>,
    metrics: Arc<OnceLock<MetricsSource>>,
}

impl NodePlane {
    /// Installs the node's management plane; returns false (and keeps the first) if one was
    /// installed already.
    pub fn install_admin(&self, admin: Arc<dyn NodeAdmin>) -> bool {
        self.admin.set(admin).is_ok()
    }

    /// Installs the node's metrics source; returns false if one was installed already.
    pub fn install_metrics(&self, source: MetricsSource) -> bool {
        self.metrics.set(source).is_ok()
    }

    pub fn admin(&self) -> Option<&Arc<dyn NodeAdmin>> {
        self.admin.get()
    }

    /// Runs `action` (JSON `NodeAction`) here for `actor`; the JSON answer or a gRPC status:
    /// `INVALID_ARGUMENT` for an action that does not parse or is refused as invalid,
    /// `UNIMPLEMENTED` with no plane installed, `INTERNAL` when the node tried and failed.
    pub async fn exec_json(&self, action: &str, actor: &str) -> Result<String, Status> {
        let action: NodeAction = serde_json::from_str(action)
            .map_err(|e| Status::invalid_argument(format!("unknown or malformed action: {e}")))?;
        let value = self.exec(action, actor).await?;
        serde_json::to_string(&value).map_err(|e| Status::internal(e.to_string()))
    }

    /// Runs `action` here for `actor` (statuses as [`NodePlane::exec_json`]).
    pub async fn exec(&self, action: NodeAction, actor: &str) -> Result<serde_json::Value, Status> {
        let admin = self
            .admin()
            .ok_or_else(|| Status::unimplemented("this node has no management plane installed"))?;
        tracing::info!(%actor, ?action, "node action");
        admin.exec(action, actor).await.map_err(|e| match e {
            NodeActionError::Invalid(m) => Status::invalid_argument(m),
            NodeActionError::Failed(m) => Status::internal(m),
        })
    }

    /// This node's metrics text (`UNIMPLEMENTED` with no source installed).
    pub fn metrics_text(&self) -> Result<String, Status> {
        let source = self
            .metrics
            .get()
            .ok_or_else(|| Status::unimplemented("this node exports no metrics"))?;
        source().map_err(Status::internal)
    }
}
