//! Deterministic generation of a large, valid, realistic input set: every task placeable, so the
//! benchmark measures the full path (rule lookups, identity checks, IP intersections, DAG).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

pub(crate) struct Sizes {
    pub(crate) jobs: usize,
    pub(crate) tasks_per_job: usize,
    pub(crate) rules: usize,
    pub(crate) pools: usize,
}

pub(crate) struct Written {
    pub(crate) count: usize,
    pub(crate) bytes: usize,
}

/// A small xorshift generator: reproducible inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn pool_ip(pool: usize, k: usize) -> String {
    format!("198.18.{}.{}", pool / 100, (pool % 100) * 2 + k + 1)
}

pub(crate) fn write(dir: &Path, s: &Sizes) -> io::Result<Written> {
    std::fs::create_dir_all(dir.join("jobs"))?;
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let identities = 20;
    let mut bytes = 0;

    // Pools: two IPs each; every tenth pool holds an identity.
    let mut settings = String::new();
    for p in 0..s.pools {
        let _ = write!(
            settings,
            "[[pools]]\nname = \"pool-{p}\"\negress_ips = [\"{}\", \"{}\"]\nslots = 4\n",
            pool_ip(p, 0),
            pool_ip(p, 1)
        );
        if p % 10 == 0 {
            let _ = writeln!(settings, "identities = [\"id-{}\"]", (p / 10) % identities);
        }
        settings.push('\n');
    }
    for i in 0..identities {
        let _ = write!(settings, "[identities.id-{i}]\ncert = \"c{i}.crt\"\nkey = \"c{i}.key\"\n\n");
    }
    bytes += settings.len();
    std::fs::write(dir.join("switchyard.toml"), settings)?;

    // Rules: a quarter each exact hosts, wildcards, CIDRs, and exact hosts with an identity.
    // Each allows IPs of 2–4 pools, always including the pool a task will land on.
    let per_kind = s.rules / 4;
    let mut egress = String::from("destinations:\n");
    for r in 0..s.rules {
        let kind = r / per_kind.max(1);
        let owner = if kind == 3 { ((r % identities) * 10) % s.pools } else { rng.below(s.pools) };
        let mut ips = vec![pool_ip(owner, rng.below(2))];
        for _ in 0..1 + rng.below(3) {
            ips.push(pool_ip(rng.below(s.pools), rng.below(2)));
        }
        let (host, port, identity) = match kind {
            0 => (format!("db{r}.corp.example"), 1433, None),
            1 => (format!("\"*.svc{r}.kafka.example\""), 9093, None),
            2 => (format!("10.{}.{}.0/24", r / 256, r % 256), 5432, None),
            _ => (format!("api{r}.partner.example.com"), 443, Some(format!("id-{}", r % identities))),
        };
        let _ = write!(
            egress,
            "  - name: rule-{r}\n    host: {host}\n    ports: [{port}]\n    egress_ips: [{}]\n",
            ips.join(", ")
        );
        if let Some(id) = identity {
            let _ = writeln!(egress, "    identity: {id}");
        }
    }
    bytes += egress.len();
    std::fs::write(dir.join("egress.yaml"), egress)?;

    // Jobs: four ingest tasks (one per kind of rule) and transforms over what they land.
    for j in 0..s.jobs {
        let mut m = format!("job: job_{j}\nschedule: \"{} * * * *\"\ntasks:\n", j % 60);
        let pick = |rng: &mut Rng, kind: usize| kind * per_kind + rng.below(per_kind);
        let r0 = pick(&mut rng, 0);
        let _ = write!(
            m,
            "  - name: ingest_db\n    class: ingest.jdbc\n    source: {{ kind: sqlserver, host: db{r0}.corp.example, database: d, user: u, password_env: DB_PW, query: \"SELECT * FROM t\", watermark: updated_at }}\n    sink: {{ table: bronze_{j}.db }}\n    retries: {{ max: 3, backoff: 5s }}\n"
        );
        let r1 = pick(&mut rng, 1);
        let _ = write!(
            m,
            "  - name: consume\n    mode: continuous\n    source: {{ kind: kafka, brokers: [b1.svc{r1}.kafka.example:9093, b2.svc{r1}.kafka.example:9093], topic: t{j} }}\n    sink: {{ table: bronze_{j}.events }}\n"
        );
        let r2 = pick(&mut rng, 2);
        let _ = write!(
            m,
            "  - name: ingest_pg\n    source: {{ kind: postgres, host: 10.{}.{}.7, database: d, user: u, password_env: PG_PW, query: \"SELECT 1\" }}\n    sink: {{ table: bronze_{j}.pg }}\n",
            r2 / 256,
            r2 % 256
        );
        let r3 = pick(&mut rng, 3);
        let _ = write!(
            m,
            "  - name: fetch_api\n    source: {{ kind: https, url: \"https://api{r3}.partner.example.com/v1/items\", identity: id-{}, pagination: {{ cursor_field: next }} }}\n    sink: {{ table: bronze_{j}.api, mode: overwrite }}\n",
            r3 % identities
        );
        let transforms = s.tasks_per_job.saturating_sub(4);
        for t in 0..transforms {
            let sql = match t {
                0 => format!(
                    "SELECT d.id, e.kind, a.v FROM bronze_{j}.db d JOIN bronze_{j}.events e ON d.id = e.id JOIN bronze_{j}.api a ON a.id = d.id"
                ),
                1 => format!(
                    "SELECT p.*, s.kind FROM bronze_{j}.pg p LEFT JOIN silver_{j}.t0 s ON p.id = s.id"
                ),
                _ => format!(
                    "WITH x AS (SELECT id, count(*) AS n FROM silver_{j}.t{} GROUP BY id) SELECT * FROM x WHERE n > {t}",
                    t - 1
                ),
            };
            let _ = write!(
                m,
                "  - name: t{t}\n    sql: |\n      {sql}\n    expectations:\n      - {{ name: has_id, check: \"id IS NOT NULL\", on_violation: drop }}\n    sink: {{ table: silver_{j}.t{t}, mode: overwrite }}\n"
            );
        }
        bytes += m.len();
        std::fs::write(dir.join("jobs").join(format!("job_{j:04}.yaml")), m)?;
    }
    Ok(Written { count: s.jobs + 2, bytes })
}
