fn main() -> Result<(), lambda_runtime::Error> {
    tsunagu::handlers::run_event(tsunagu::handlers::publish_events)
}
