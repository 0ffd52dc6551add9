//! Burns CPU. `GET /?iterations=N` spins N rounds and answers; without `iterations` it never stops
//! (the host's CPU deadline has to cut it off).

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let limit = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("iterations=")))
        .and_then(|n| n.parse::<u64>().ok());
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut i = 0_u64;
    while limit.is_none_or(|n| i < n) {
        state = std::hint::black_box(state.rotate_left(5) ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d));
        i += 1;
    }
    Ok(Response::new(format!("spun {i} rounds: {state:x}\n").into()))
}
