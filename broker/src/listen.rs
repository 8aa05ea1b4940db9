//! Binding the internal listener: a Unix domain socket (private by file permissions) or a TCP
//! address that core has judged private (loopback, or mesh-authorized).

use axum::Router;
use scopegate_core::broker_config::{internal_listen, InternalListen};
use std::future::Future;
use std::pin::Pin;

/// Mode of the socket file: the broker's user and group (put Envoy in that group).
const SOCKET_MODE: u32 = 0o660;

pub enum Internal {
    Unix(tokio::net::UnixListener, String),
    Tcp(tokio::net::TcpListener),
}

impl Internal {
    /// Binds `addr` (`unix:/path` or `host:port`) after core's privacy check.
    pub async fn bind(addr: &str, mesh_authorized: bool) -> Result<Internal, String> {
        match internal_listen(addr, mesh_authorized)
            .map_err(|e| format!("broker.internal_listen: {e}"))?
        {
            InternalListen::Unix(path) => {
                use std::os::unix::fs::{FileTypeExt, PermissionsExt};
                // A socket left by a previous run blocks the bind; anything else at the path is
                // not ours to remove.
                if let Ok(meta) = std::fs::symlink_metadata(&path) {
                    if !meta.file_type().is_socket() {
                        return Err(format!("{path} exists and is not a socket"));
                    }
                    std::fs::remove_file(&path).map_err(|e| format!("remove {path}: {e}"))?;
                }
                let l = tokio::net::UnixListener::bind(&path)
                    .map_err(|e| format!("bind {path}: {e}"))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(SOCKET_MODE))
                    .map_err(|e| format!("chmod {path}: {e}"))?;
                Ok(Internal::Unix(l, path))
            }
            InternalListen::Tcp(sa) => tokio::net::TcpListener::bind(sa)
                .await
                .map(Internal::Tcp)
                .map_err(|e| format!("bind {sa}: {e}")),
        }
    }

    /// What the `listening` line says: `unix:/path` or the bound address.
    pub fn describe(&self) -> String {
        match self {
            Internal::Unix(_, path) => format!("unix:{path}"),
            Internal::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|e| format!("?({e})")),
        }
    }

    /// Serves `router` until `stop` resolves.
    pub fn serve(
        self,
        router: Router,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> {
        match self {
            Internal::Unix(l, _) => {
                Box::pin(async move { axum::serve(l, router).with_graceful_shutdown(stop).await })
            }
            Internal::Tcp(l) => {
                Box::pin(async move { axum::serve(l, router).with_graceful_shutdown(stop).await })
            }
        }
    }
}
