//! Candlepin as FC 2.0.0 (Foreman 3.18) configures it: TLS on 23443 from a PKCS12 keystore and
//! truststore, OAuth with the consumer `katello` that Katello shares, the Katello module, and
//! the Artemis broker with a STOMP acceptor on 61613 for Katello's `:candlepin_events:`
//! (src/roles/candlepin/{defaults,tasks,templates}).
//!
//! candlepin.conf (database password, OAuth secret), server.xml and broker.xml (keystore
//! password) hold secrets and the stores are binary: an init container writes them from the
//! ConfigMap's templates, the generated Secrets and the database Secret into a memory volume.
//! It uses the Foreman image, whose Ruby has OpenSSL's PKCS12 (the Candlepin image has Java's
//! keytool, which cannot import a PEM key); Candlepin's own image then only reads them.

use super::certificates::{
    self, CANDLEPIN_CRT, CANDLEPIN_KEY, CA_CRT, CA_KEY, CA_SECRET, CLIENT_CRT, CLIENT_KEY,
    TLS_SECRET,
};
use super::{
    config_map, config_volume, db_env, deployment, dir_mount, empty_volume, file_mount, image,
    optional_secret_env, secret_env, secret_volume, service, strings, Check, Component, Container,
    Object, Pod, Probes, RunAs, GENERATED_SECRET,
};
use crate::crd::Foreman;
use crate::profile::{self, Profile, Sized};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec};

/// FC roles/candlepin/defaults: candlepin_ssl_port.
pub const PORT: u16 = 23443;
/// FC templates/broker.xml.j2: the STOMP acceptor.
pub const STOMP_PORT: u16 = 61613;
const CONFIG_MAP: &str = "candlepin-config";

pub fn objects(fm: &Foreman) -> Vec<Object> {
    vec![
        config(fm).into(),
        service(fm, "candlepin", &[("https", PORT), ("stomp", STOMP_PORT)]).into(),
        deployment(fm, "candlepin", 1, true, pod(fm)).into(),
    ]
}

/// CO images/candlepin/Containerfile: `USER tomcat` only from CO 2e04cdf (2026-07-13, the
/// Candlepin 5.0 image); the foreman-3.19 branch (and 3.18) has no USER line, so it runs as
/// root. fsGroup 53 (tomcat's gid; FK S/candlepin.yaml, FC mounts with gid 53).
pub fn run_as() -> RunAs {
    RunAs {
        user: None,
        fs_group: 53,
        image_root: true,
    }
}

fn config(fm: &Foreman) -> ConfigMap {
    config_map(
        fm,
        CONFIG_MAP,
        "candlepin",
        strings([
            ("setup.rb", SETUP_RB.into()),
            ("server.xml.in", SERVER_XML.into()),
            ("broker.xml.in", BROKER_XML.into()),
            // FC templates/tomcat.conf, the heap from the tuning profile (crate::sizing).
            ("tomcat.conf", format!("TOMCAT_CFG_LOADED=\"1\"\nTOMCATS_BASE=\"/var/lib/tomcats/\"\nJAVA_HOME=\"/usr/lib/jvm/jre-17\"\nCATALINA_HOME=\"/usr/share/tomcat\"\nCATALINA_TMPDIR=\"/var/cache/tomcat/temp\"\nJAVA_OPTS=\"{}\"\nSECURITY_MANAGER=\"0\"\n", Profile::of(fm.spec.tuning).candlepin_java_opts())),
            // FC templates/jaas.conf, login.config, cert-roles.properties, cert-users.properties.j2.
            ("jaas.conf", "CATALINA_OPTS=\"-Djava.security.auth.login.config=$CATALINA_HOME/conf/login.config\"\n".into()),
            ("login.config", LOGIN_CONFIG.into()),
            ("cert-roles.properties", "candlepinEventsConsumer=katelloUser\n".into()),
            ("cert-users.properties", format!("katelloUser={}\n", certificates::client_dn(fm))),
            // Logs to the container's output, so `kubectl logs` shows them (FK
            // S/runtime-config.yaml mounts these two over the image's: Tomcat's JULI with only
            // a ConsoleHandler, Candlepin's logback with only a console appender).
            ("logging.properties", LOGGING_PROPERTIES.into()),
            ("logback.xml", LOGBACK_XML.into()),
        ]),
    )
}

fn pod(fm: &Foreman) -> PodSpec {
    let db = &fm.spec.database.candlepin_secret;
    let mut setup = Container::new(
        "configure",
        image(fm, Component::Foreman),
        &["ruby", "/etc/foreman-box/setup.rb"],
    );
    setup.env = db_env("DB_", db);
    setup.env.extend([
        optional_secret_env("DB_SSLMODE", db, "sslmode"),
        secret_env(
            "CANDLEPIN_OAUTH_SECRET",
            GENERATED_SECRET,
            "candlepin-oauth-secret",
        ),
        secret_env("KEYSTORE_PASSWORD", GENERATED_SECRET, "keystore-password"),
    ]);
    setup.mounts = vec![
        dir_mount("config", "/etc/foreman-box", true),
        dir_mount("certs", "/etc/foreman-box/certs", true),
        dir_mount("generated", "/etc/foreman-box/generated", false),
    ];

    // FC roles/candlepin/tasks/main.yml "Deploy Candlepin quadlet": these files at these paths.
    // The CA pair comes from the CA Secret: Candlepin signs hosts' certificates with it.
    let mut c = Container::new(
        "candlepin",
        image(fm, Component::Candlepin),
        &["/usr/libexec/tomcat/server", "start"],
    );
    c.mounts = vec![
        file_mount(
            "ca",
            "/etc/candlepin/certs/candlepin-ca.crt",
            "candlepin-ca.crt",
        ),
        file_mount(
            "ca",
            "/etc/candlepin/certs/candlepin-ca.key",
            "candlepin-ca.key",
        ),
        file_mount("generated", "/etc/candlepin/certs/keystore", "keystore"),
        file_mount("generated", "/etc/candlepin/certs/truststore", "truststore"),
        file_mount(
            "generated",
            "/etc/candlepin/candlepin.conf",
            "candlepin.conf",
        ),
        file_mount("generated", "/etc/candlepin/broker.xml", "broker.xml"),
        file_mount("generated", "/etc/tomcat/server.xml", "server.xml"),
        file_mount("config", "/etc/tomcat/tomcat.conf", "tomcat.conf"),
        file_mount("config", "/etc/tomcat/login.config", "login.config"),
        file_mount(
            "config",
            "/etc/tomcat/cert-roles.properties",
            "cert-roles.properties",
        ),
        file_mount(
            "config",
            "/etc/tomcat/cert-users.properties",
            "cert-users.properties",
        ),
        file_mount("config", "/etc/tomcat/conf.d/jaas.conf", "jaas.conf"),
        // FK S/candlepin.yaml: these two paths.
        file_mount(
            "config",
            "/etc/tomcat/logging.properties",
            "logging.properties",
        ),
        file_mount("config", LOGBACK_PATH, "logback.xml"),
        // broker.xml's journal.
        dir_mount("artemis", "/var/lib/candlepin/activemq-artemis", false),
    ];
    c.ports = vec![("https", PORT), ("stomp", STOMP_PORT)];
    // FC healthcheck: `curl --fail --insecure https://localhost:23443/candlepin/status`; FK
    // requires `"mode":"NORMAL"` in the answer. Candlepin migrates on start (Manage), slowly.
    let status = format!(
        "curl -fsS --insecure --max-time 8 https://localhost:{PORT}/candlepin/status | grep -q '\"mode\" *: *\"NORMAL\"'"
    );
    let check = || Check::exec(&["/bin/sh", "-c", &status]);
    c.probes = Probes {
        startup: Some(check().every(10, None, Some(10), Some(60))),
        readiness: Some(check().every(10, None, Some(10), Some(3))),
        liveness: Some(Check::tcp(PORT).every(20, None, Some(5), Some(6))),
    };
    // The heap's floor and ceiling (tomcat.conf above) and the JVM's memory beside the heap.
    c.resources = Some(profile::resources(&fm.spec, Sized::Candlepin));
    Pod {
        run_as: run_as(),
        init: vec![setup],
        containers: vec![c],
        volumes: vec![
            config_volume("config", CONFIG_MAP),
            secret_volume(
                "ca",
                CA_SECRET,
                &[(CA_CRT, "candlepin-ca.crt"), (CA_KEY, "candlepin-ca.key")],
            ),
            secret_volume(
                "certs",
                TLS_SECRET,
                &[
                    (CA_CRT, "candlepin-ca.crt"),
                    (CANDLEPIN_CRT, "tomcat.crt"),
                    (CANDLEPIN_KEY, "tomcat.key"),
                    (CLIENT_CRT, "client.crt"),
                    (CLIENT_KEY, "client.key"),
                ],
            ),
            empty_volume("generated", true),
            empty_volume("artemis", false),
        ],
        restart: "Always",
        grace_seconds: None,
    }
    .render()
}

/// Writes the PKCS12 stores (FC tasks/certs.yml: keystore = tomcat key + cert + CA, alias
/// `tomcat`; truststore = client key + cert + CA, alias `artemis-client`), candlepin.conf (FC
/// templates/candlepin.conf.j2, as a properties file with escaped values), and server.xml and
/// broker.xml with the keystore password (XML-escaped).
const SETUP_RB: &str = r##"require 'openssl'
require 'cgi'
certs = '/etc/foreman-box/certs'
out = '/etc/foreman-box/generated'
pass = ENV.fetch('KEYSTORE_PASSWORD')
ca = OpenSSL::X509::Certificate.new(File.read("#{certs}/candlepin-ca.crt"))
store = lambda do |name, alias_name, crt, key|
  p12 = OpenSSL::PKCS12.create(pass, alias_name, OpenSSL::PKey.read(File.read("#{certs}/#{key}")),
                               OpenSSL::X509::Certificate.new(File.read("#{certs}/#{crt}")), [ca])
  File.binwrite("#{out}/#{name}", p12.to_der)
end
store.call('keystore', 'tomcat', 'tomcat.crt', 'tomcat.key')
store.call('truststore', 'artemis-client', 'client.crt', 'client.key')
esc = ->(v) { v.to_s.gsub('\\') { '\\\\' }.gsub("\n", '\\n').gsub(/\A /, '\\ ') }
db = "jdbc:postgresql://#{ENV.fetch('DB_HOST')}:#{ENV.fetch('DB_PORT')}/#{ENV.fetch('DB_NAME')}?sslmode=#{ENV.fetch('DB_SSLMODE', 'prefer')}"
conf = {
  'candlepin.consumer_system_name_pattern' => '.+',
  'candlepin.environment_content_filtering' => 'true',
  'candlepin.auth.basic.enable' => 'false',
  'candlepin.auth.trusted.enable' => 'false',
  'candlepin.audit.hornetq.config_path' => '/etc/candlepin/broker.xml',
  'candlepin.db.database_manage_on_startup' => 'Manage',
  'candlepin.auth.oauth.enable' => 'true',
  'candlepin.auth.oauth.consumer.katello.secret' => ENV.fetch('CANDLEPIN_OAUTH_SECRET'),
  'module.config.adapter_module' => 'org.candlepin.katello.KatelloModule',
  'candlepin.ca_key' => '/etc/candlepin/certs/candlepin-ca.key',
  'candlepin.ca_cert' => '/etc/candlepin/certs/candlepin-ca.crt',
  'candlepin.async.jobs.ExpiredPoolsCleanupJob.schedule' => '0 0 0 * * ?',
  'jpa.config.hibernate.dialect' => 'org.hibernate.dialect.PostgreSQLDialect',
  'jpa.config.hibernate.hbm2ddl.auto' => 'validate',
  'jpa.config.hibernate.connection.username' => ENV.fetch('DB_USER'),
  'jpa.config.hibernate.connection.password' => ENV.fetch('DB_PASSWORD'),
  'jpa.config.hibernate.connection.driver_class' => 'org.postgresql.Driver',
  'jpa.config.hibernate.connection.url' => db,
  'org.quartz.jobStore.misfireThreshold' => '60000',
  'org.quartz.jobStore.useProperties' => 'false',
  'org.quartz.jobStore.dataSource' => 'myDS',
  'org.quartz.jobStore.tablePrefix' => 'QRTZ_',
  'org.quartz.jobStore.class' => 'org.quartz.impl.jdbcjobstore.JobStoreTX',
  'org.quartz.jobStore.driverDelegateClass' => 'org.quartz.impl.jdbcjobstore.PostgreSQLDelegate',
  'org.quartz.dataSource.myDS.driver' => 'org.postgresql.Driver',
  'org.quartz.dataSource.myDS.user' => ENV.fetch('DB_USER'),
  'org.quartz.dataSource.myDS.password' => ENV.fetch('DB_PASSWORD'),
  'org.quartz.dataSource.myDS.maxConnections' => '5',
  'org.quartz.dataSource.myDS.URL' => db,
}
File.write("#{out}/candlepin.conf", conf.map { |k, v| "#{k}=#{esc.call(v)}\n" }.join, perm: 0o640)
xml_pass = CGI.escapeHTML(pass)
%w[server.xml broker.xml].each do |f|
  File.write("#{out}/#{f}", File.read("/etc/foreman-box/#{f}.in").gsub('@KEYSTORE_PASSWORD@', xml_pass), perm: 0o640)
end
"##;

/// FC templates/server.xml.j2, with the connector bound to every address (FC binds localhost;
/// here Foreman reaches it through the Service), and FK's access log to the container's output
/// (S/runtime-config.yaml: AccessLogValve writing /proc/self/fd/1, not rotated; FC leaves the
/// valve commented out).
const SERVER_XML: &str = r##"<Server port="8005" shutdown="SHUTDOWN">
  <Listener className="org.apache.catalina.core.AprLifecycleListener" SSLEngine="on" />
  <Listener className="org.apache.catalina.core.JreMemoryLeakPreventionListener" />
  <Listener className="org.apache.catalina.mbeans.GlobalResourcesLifecycleListener" />
  <Listener className="org.apache.catalina.core.ThreadLocalLeakPreventionListener" />
  <GlobalNamingResources>
    <Resource name="UserDatabase" auth="Container" type="org.apache.catalina.UserDatabase"
              description="User database that can be updated and saved"
              factory="org.apache.catalina.users.MemoryUserDatabaseFactory"
              pathname="conf/tomcat-users.xml" />
  </GlobalNamingResources>
  <Service name="Catalina">
    <Connector port="23443" address="0.0.0.0" protocol="HTTP/1.1" SSLEnabled="true"
               maxThreads="150" scheme="https" secure="true" clientAuth="want"
               sslProtocol="TLSv1.2" sslEnabledProtocols="TLSv1.2"
               keystoreFile="/etc/candlepin/certs/keystore" keystorePass="@KEYSTORE_PASSWORD@"
               keystoreType="PKCS12"
               ciphers="TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256" />
    <Engine name="Catalina" defaultHost="localhost">
      <Realm className="org.apache.catalina.realm.UserDatabaseRealm" resourceName="UserDatabase"/>
      <Host name="localhost" appBase="webapps" unpackWARs="true" autoDeploy="true">
        <Valve className="org.apache.catalina.valves.AccessLogValve" directory="/proc/self/fd"
               prefix="1" suffix="" rotatable="false" pattern="common" />
      </Host>
    </Engine>
  </Service>
</Server>
"##;

/// FC templates/broker.xml.j2 (Artemis, Candlepin 4.4 / Foreman 3.18), the STOMP acceptor bound
/// to every address so Katello's `:candlepin_events:` reach it through the Service.
const BROKER_XML: &str = r##"<configuration xmlns="urn:activemq" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="urn:activemq /schema/artemis-configuration.xsd">
  <core xmlns="urn:activemq:core" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="urn:activemq:core ">
    <configuration-file-refresh-period>-1</configuration-file-refresh-period>
    <acceptors>
      <acceptor name="in-vm">vm://0</acceptor>
      <acceptor name="stomp">tcp://0.0.0.0:61613?protocols=STOMP;useEpoll=false;sslEnabled=true;trustStorePath=/etc/candlepin/certs/truststore;trustStorePassword=@KEYSTORE_PASSWORD@;keyStorePath=/etc/candlepin/certs/keystore;keyStorePassword=@KEYSTORE_PASSWORD@;needClientAuth=true</acceptor>
    </acceptors>
    <security-enabled>true</security-enabled>
    <security-settings>
      <security-setting match="katello.candlepin.#">
        <permission type="consume" roles="candlepinEventsConsumer"/>
      </security-setting>
      <security-setting match="#">
        <permission type="createAddress" roles="invm-role"/>
        <permission type="deleteAddress" roles="invm-role"/>
        <permission type="createDurableQueue" roles="invm-role"/>
        <permission type="deleteDurableQueue" roles="invm-role"/>
        <permission type="createNonDurableQueue" roles="invm-role"/>
        <permission type="deleteNonDurableQueue" roles="invm-role"/>
        <permission type="send" roles="invm-role"/>
        <permission type="consume" roles="invm-role"/>
        <permission type="browse" roles="invm-role"/>
        <permission type="manage" roles="invm-role"/>
      </security-setting>
    </security-settings>
    <cluster-user></cluster-user>
    <cluster-password></cluster-password>
    <persistence-enabled>true</persistence-enabled>
    <journal-type>NIO</journal-type>
    <journal-pool-files>1</journal-pool-files>
    <create-bindings-dir>true</create-bindings-dir>
    <create-journal-dir>true</create-journal-dir>
    <bindings-directory>/var/lib/candlepin/activemq-artemis/bindings</bindings-directory>
    <journal-directory>/var/lib/candlepin/activemq-artemis/journal</journal-directory>
    <large-messages-directory>/var/lib/candlepin/activemq-artemis/largemsgs</large-messages-directory>
    <paging-directory>/var/lib/candlepin/activemq-artemis/paging</paging-directory>
    <max-disk-usage>99</max-disk-usage>
    <addresses>
      <address name="event.default">
        <multicast>
          <queue name="event.org.candlepin.audit.LoggingListener" />
          <queue name="event.org.candlepin.audit.ActivationListener" />
        </multicast>
      </address>
      <address name="katello.candlepin">
        <multicast>
          <queue name="katello_candlepin_event_monitor.candlepin_events" max-consumers="1" />
        </multicast>
      </address>
      <address name="job">
        <anycast>
          <queue name="jobs"/>
        </anycast>
      </address>
    </addresses>
    <address-settings>
      <address-setting match="event.default">
        <config-delete-queues>FORCE</config-delete-queues>
        <auto-create-queues>true</auto-create-queues>
        <max-size-bytes>10485760</max-size-bytes>
        <page-size-bytes>1048576</page-size-bytes>
        <redelivery-delay>30000</redelivery-delay>
        <max-redelivery-delay>3600000</max-redelivery-delay>
        <redelivery-delay-multiplier>2</redelivery-delay-multiplier>
        <max-delivery-attempts>0</max-delivery-attempts>
      </address-setting>
      <address-setting match="katello.candlepin">
        <auto-create-queues>false</auto-create-queues>
        <max-size-bytes>10485760</max-size-bytes>
        <page-size-bytes>1048576</page-size-bytes>
        <redelivery-delay>0</redelivery-delay>
        <max-delivery-attempts>1</max-delivery-attempts>
      </address-setting>
      <address-setting match="job">
        <max-size-bytes>10485760</max-size-bytes>
        <page-size-bytes>1048576</page-size-bytes>
        <default-consumer-window-size>0</default-consumer-window-size>
        <redelivery-delay>30000</redelivery-delay>
        <max-redelivery-delay>3600000</max-redelivery-delay>
        <redelivery-delay-multiplier>2</redelivery-delay-multiplier>
        <max-delivery-attempts>0</max-delivery-attempts>
      </address-setting>
    </address-settings>
    <diverts>
      <divert name="katello_divert">
        <exclusive>false</exclusive>
        <address>event.default</address>
        <filter string="(EVENT_TARGET='POOL' and EVENT_TYPE='CREATED') OR (EVENT_TARGET='POOL' and EVENT_TYPE='DELETED')"/>
        <forwarding-address>katello.candlepin</forwarding-address>
      </divert>
    </diverts>
  </core>
</configuration>
"##;

/// Where Candlepin's webapp reads its logback configuration (FK S/candlepin.yaml; the RPM
/// unpacks the webapp under Tomcat's webapps).
pub const LOGBACK_PATH: &str = "/var/lib/tomcat/webapps/candlepin/WEB-INF/classes/logback.xml";

/// Tomcat's JULI logging with the console as its only handler (FK S/runtime-config.yaml
/// `logging.properties`): the image's file handlers under /var/log/tomcat are gone.
const LOGGING_PROPERTIES: &str = "handlers = java.util.logging.ConsoleHandler
.handlers = java.util.logging.ConsoleHandler
java.util.logging.ConsoleHandler.level = ALL
java.util.logging.ConsoleHandler.formatter = org.apache.juli.OneLineFormatter
java.util.logging.ConsoleHandler.encoding = UTF-8
org.apache.catalina.core.ContainerBase.[Catalina].[localhost].level = INFO
org.apache.catalina.core.ContainerBase.[Catalina].[localhost].handlers = java.util.logging.ConsoleHandler
";

/// Candlepin's logback with one console appender instead of its files under /var/log/candlepin
/// (candlepin/candlepin src/main/resources/logback.xml: candlepin.log, error.log, audit.log);
/// the levels are upstream's and FK's (root WARN, org.candlepin INFO), the audit log goes to
/// the same output.
const LOGBACK_XML: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <contextName>candlepin</contextName>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{ISO8601} [thread=%thread] %-5p %c - %m%n</pattern></encoder>
  </appender>
  <appender name="ASYNC" class="ch.qos.logback.classic.AsyncAppender">
    <appender-ref ref="STDOUT"/>
  </appender>
  <logger name="org.candlepin" level="INFO"/>
  <root level="WARN">
    <appender-ref ref="ASYNC"/>
  </root>
</configuration>
"##;

/// FC templates/login.config.
const LOGIN_CONFIG: &str = r##"CertificateLogin {
        org.apache.activemq.artemis.spi.core.security.jaas.TextFileCertificateLoginModule required
          debug=true
          org.apache.activemq.jaas.textfiledn.user="cert-users.properties"
          org.apache.activemq.jaas.textfiledn.role="cert-roles.properties";
};

InVMLogin {
        org.apache.activemq.artemis.spi.core.security.jaas.GuestLoginModule required
          debug=true
          org.apache.activemq.jaas.guest.user="invm-user"
          org.apache.activemq.jaas.guest.role="invm-role";
};
"##;
