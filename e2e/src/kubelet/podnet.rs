//! Which loopback block a kubelet's pods get their addresses from.
//!
//! Several environments can run on one machine at once — a `make dev` next to a test run, a test that
//! starts its own `weft-dev` — and pods bind fixed ports on their pod IP (a host group's `:9191`), so
//! two kubelets must never hand out the same address. Each kubelet claims a block 127.<k>.0.0/16 for
//! the life of its process by binding the abstract Unix socket `weft-e2e-pod-network-<k>`: binding is
//! atomic, and the kernel releases the name when the process exits, however it exits. The first free
//! block wins, so a lone environment keeps 127.0.0.N.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::Error;

/// A claimed block of pod addresses; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct PodNetworkClaim {
    block: u8,
    _socket: UnixDatagram,
}

impl PodNetworkClaim {
    /// Claims the first free block.
    pub fn claim() -> Result<Self, Error> {
        Self::claim_from(0)
    }

    /// Claims the first free block from `first` on.
    pub fn claim_from(first: u8) -> Result<Self, Error> {
        for block in first..=u8::MAX {
            let name = format!("weft-e2e-pod-network-{block}");
            let addr = SocketAddr::from_abstract_name(name.as_bytes())
                .map_err(|e| Error::io("abstract socket name", e))?;
            match UnixDatagram::bind_addr(&addr) {
                Ok(socket) => {
                    return Ok(Self {
                        block,
                        _socket: socket,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(Error::io(format!("claim pod network block {block}"), e)),
            }
        }
        Err(Error::Env(
            "every pod network block 127.0-255.0.0/16 is claimed by another environment".into(),
        ))
    }

    /// The block `k` of 127.k.0.0/16.
    pub fn block(&self) -> u8 {
        self.block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_block_is_not_handed_out_again_until_released() {
        // Start high so that a concurrently running environment (which claims from 0) is unaffected.
        let a = PodNetworkClaim::claim_from(200).unwrap();
        let b = PodNetworkClaim::claim_from(a.block()).unwrap();
        assert!(b.block() > a.block(), "{} then {}", a.block(), b.block());
        let released = a.block();
        drop(a);
        let c = PodNetworkClaim::claim_from(released).unwrap();
        assert_eq!(c.block(), released, "free again once dropped");
    }
}
