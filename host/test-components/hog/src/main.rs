//! Allocates memory. `GET /?mb=N` allocates and touches N MiB, then answers; without `mb` it keeps
//! allocating until the host's memory limit stops it.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let limit = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("mb=")))
        .and_then(|n| n.parse::<usize>().ok());
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    while limit.is_none_or(|n| chunks.len() < n) {
        let mut chunk = vec![0_u8; 1 << 20];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        chunks.push(std::hint::black_box(chunk));
    }
    let total: usize = chunks.iter().map(|c| c.iter().step_by(4096).map(|b| *b as usize).sum::<usize>()).sum();
    Ok(Response::new(format!("allocated {} MiB ({total} pages)\n", chunks.len()).into()))
}
