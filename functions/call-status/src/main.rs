fn main() -> Result<(), lambda_http::Error> {
    tsunagu::handlers::run_http(tsunagu::handlers::call_status)
}
