fn main() -> Result<(), lambda_http::Error> {
    tsunagu::handlers::run_http(tsunagu::handlers::list_interactions)
}
