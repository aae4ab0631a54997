//! The floor `make bench-lambda` compares every function with: `lambda_http` answering
//! "hello" with no SDK, no configuration and no I/O, built with the same release profile.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
