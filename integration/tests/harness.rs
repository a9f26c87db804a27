//! The harness itself: moto and PostgreSQL come up on free loopback ports, serve real requests,
//! and go away.

use keyward_integration::moto::MotoServer;
use keyward_integration::postgres::PostgresCluster;

#[tokio::test]
async fn moto_serves_real_aws_api_calls_on_loopback() {
    let moto = MotoServer::start().await.unwrap();
    assert!(moto.endpoint.starts_with("http://127.0.0.1:"));
    let s3 = moto.s3();
    s3.create_bucket()
        .bucket("harness-check")
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    keyward_integration::moto::REGION,
                ))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let buckets = s3.list_buckets().send().await.unwrap();
    assert!(
        buckets
            .buckets()
            .iter()
            .any(|b| b.name() == Some("harness-check"))
    );
}

#[tokio::test]
async fn two_moto_servers_never_share_a_port() {
    let (a, b) = tokio::join!(MotoServer::start(), MotoServer::start());
    assert_ne!(a.unwrap().endpoint, b.unwrap().endpoint);
}

#[tokio::test]
async fn postgres_cluster_accepts_password_logins_and_stops() {
    let cluster = PostgresCluster::start().await.unwrap();
    let client = cluster.connect_superuser().await.unwrap();
    client
        .batch_execute("CREATE ROLE app LOGIN PASSWORD 'p@ss:w/rd\"''x'")
        .await
        .unwrap();
    client
        .batch_execute("CREATE DATABASE appdb OWNER app")
        .await
        .unwrap();
    // A password full of connection-string metacharacters still logs in.
    let (app, connection) = tokio_postgres::connect(
        &cluster.connection_string("app", "p@ss:w/rd\"'x", "appdb"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let row = app
        .query_one("SELECT current_user::text, 1 + 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "app");
    assert_eq!(row.get::<_, i32>(1), 2);
    // A wrong password is refused: authentication is real, not trust.
    assert!(
        tokio_postgres::connect(
            &cluster.connection_string("app", "wrong", "appdb"),
            tokio_postgres::NoTls
        )
        .await
        .is_err()
    );
    let port = cluster.port;
    let data_dir = cluster.data_dir();
    drop(app);
    drop(cluster);
    assert!(!data_dir.exists(), "the cluster's directory is removed");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the server is stopped"
    );
}
