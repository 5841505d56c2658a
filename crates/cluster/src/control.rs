//! `ControlService`: identity and join checks (`Hello`), and the server side of leader
//! forwarding (`Propose`, `Query`).

use std::sync::Arc;

use cairn_meta::placement::SYSTEM_GROUP;
use cairn_raft::Registry;
use cairn_rpc::pb::control_service_server::ControlService;
use cairn_rpc::pb::{
    HelloReply, HelloRequest, ProposeReply, ProposeRequest, QueryReply, QueryRequest,
};
use tonic::{Request, Response, Status};

use crate::ClusterSettings;

/// `HelloReply.cluster_id` of a node whose cluster is being formed.
pub const FORMING: &str = "forming";

pub struct ControlServer {
    registry: Arc<Registry>,
    settings: ClusterSettings,
}

impl ControlServer {
    pub fn new(registry: Arc<Registry>, settings: ClusterSettings) -> Self {
        Self { registry, settings }
    }
}

#[tonic::async_trait]
impl ControlService for ControlServer {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        if req.cluster_name != self.settings.cluster_name {
            tracing::warn!(?peer, node = %req.node_id, name = %req.cluster_name, "refused a node of another cluster");
            return Err(Status::permission_denied(format!(
                "this node belongs to cluster `{}`, not `{}`",
                self.settings.cluster_name, req.cluster_name
            )));
        }
        if let Some(token) = &self.settings.join_token {
            if req.join_token != *token {
                tracing::warn!(?peer, node = %req.node_id, "refused a node with a wrong or missing join token");
                return Err(Status::permission_denied(
                    "wrong or missing CLUSTER_JOIN_TOKEN",
                ));
            }
        }
        let mut cluster_id = self
            .registry
            .meta()
            .cluster_id(SYSTEM_GROUP)
            .ok()
            .flatten()
            .map(|c| c.0)
            .unwrap_or_default();
        if cluster_id.is_empty()
            && self
                .registry
                .is_initialized(SYSTEM_GROUP)
                .await
                .unwrap_or(false)
        {
            // Bootstrapped but the identity is not applied here yet: tell greeters to wait,
            // never to bootstrap a second cluster.
            cluster_id = FORMING.to_string();
        }
        Ok(Response::new(HelloReply {
            node_id: self.settings.node_id.clone(),
            raft_id: self.settings.raft_id,
            cluster_name: self.settings.cluster_name.clone(),
            cluster_id,
            rpc_addr: self.settings.rpc_addr.clone(),
        }))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let req = request.into_inner();
        let response = self.registry.serve_propose(req.group, &req.command).await;
        Ok(Response::new(ProposeReply { response }))
    }

    async fn query(&self, request: Request<QueryRequest>) -> Result<Response<QueryReply>, Status> {
        let req = request.into_inner();
        let result = self.registry.serve_query(req.group, &req.query).await;
        Ok(Response::new(QueryReply { result }))
    }
}
