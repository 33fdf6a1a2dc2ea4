#!/usr/bin/env bash
# The deployment, proven: static checks, then apply the module to moto with
# IAM enforced, run the pipeline on what it made with each handler under its
# own role, compare with the local stack, and destroy. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
last=
took() { [[ -z "$last" ]] || echo "($(( $(date +%s) - last )) s)"; }
step() {
  took
  last=$(date +%s)
  printf '\n==> %s\n' "$*"
}
die() { echo "error: $*" >&2; exit 1; }

command -v terraform >/dev/null || die "terraform is not installed (the machines carry Terraform 1.11 at /usr/local/bin)"
[[ -d /opt/tf-plugins/registry.terraform.io/hashicorp/aws ]] || die "the hashicorp/aws provider mirror /opt/tf-plugins is missing"
export TF_CLI_CONFIG_FILE=$root/terraform/cli.tfrc TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
bin=$(scripts/tools.sh)
work=$root/target/deploy-check
rm -rf "$work" && mkdir -p "$work"

step "terraform fmt -check, init (offline), validate"
terraform fmt -check -recursive terraform
terraform -chdir=terraform init -backend=false -input=false >/dev/null
terraform -chdir=terraform validate

step "checkov"
"$bin/checkov" -d terraform --framework terraform --quiet --compact --skip-download --skip-path terraform/test

step "the deployment check's own tests (IAM evaluator, call mapping, source scan; offline)"
"$bin/python" terraform/test/check.py selftest

step "moto_server.py's fixes against moto itself (versioned notifications and reads, fail-closed conditions)"
"$bin/python" terraform/test/moto_selftest.py

if [[ "${1:-}" == "--static" ]]; then
  took
  echo "static checks passed"
  exit 0
fi

step "Lambda zips (arm64, provided.al2023)"
scripts/build-lambdas.sh # incremental: seconds when nothing changed

step "the pipeline CLI"
# The build `cargo test --workspace` makes (its target/debug/pipeline), so
# that after the tests this costs nothing: `cargo build -p pipeline` unifies
# features without the dev-dependencies and rebuilt much of the SDK (4 min).
cargo test --workspace --no-run -q
pipeline=$root/target/debug/pipeline
[[ -x "$pipeline" ]] || die "no $pipeline after the build"

step "moto on 127.0.0.1 with IAM enforced"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint=http://127.0.0.1:$port
INITIAL_NO_AUTH_ACTION_COUNT=3 "$bin/python" terraform/test/moto_server.py -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
up_pid=
cleanup() {
  [[ -n "$up_pid" ]] && kill "$up_pid" 2>/dev/null || true
  kill "$moto" 2>/dev/null || true
}
trap cleanup EXIT
listening() { "$bin/python" -c "import urllib.request; urllib.request.urlopen('$endpoint/moto-api/')" 2>/dev/null; }
for _ in $(seq 150); do listening && break; sleep 0.2; done
listening || { tail -20 "$work/moto.log"; die "moto did not start on $endpoint (log above)"; }
read -r key secret < <("$bin/python" terraform/test/check.py bootstrap "$endpoint")
export AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL=$endpoint
operator=arn:aws:iam::123456789012:user/operator

step "terraform apply"
start=$(date +%s)
rm -f terraform/test/terraform.tfstate terraform/test/terraform.tfstate.backup # a fresh moto has none of it
terraform -chdir=terraform/test init -input=false >/dev/null
terraform -chdir=terraform/test apply -input=false -auto-approve -var "endpoint=$endpoint" -var "operator_arn=$operator" >"$work/apply.log" || { tail -50 "$work/apply.log"; die "apply failed"; }

step "a second plan shows no changes"
set +e
terraform -chdir=terraform/test plan -input=false -detailed-exitcode -var "endpoint=$endpoint" -var "operator_arn=$operator" >"$work/plan.log"
plan=$?
set -e
[[ $plan == 0 ]] || { cat "$work/plan.log"; die "the second plan is not empty (exit $plan)"; }
terraform -chdir=terraform/test output -json >"$work/outputs.json"
out() { "$bin/python" -c "import json,sys; print(json.load(open('$work/outputs.json'))['$1']['value'])"; }

step "pipeline run on the applied resources, each handler under its own role"
# --record-calls: each role's identity (GetCallerIdentity with its
# credentials) and every distinct request made with them, by the handlers and
# by the pollers standing in for the event source mappings; check.py compares
# them, action and resource, with the role's grants.
set +e
"$pipeline" --state "$work/aws-state" --outputs "$work/outputs.json" run data --local-handlers \
  --ingest-role "$(out ingest_role_arn)" --projector-role "$(out projector_role_arn)" \
  --consumer-role "$(out consumer_role_arn)" --timeout 900 --json \
  --record-calls "$work/calls.json" >"$work/aws-run.json"
code=$?
set -e
[[ $code == 0 || $code == 3 ]] || die "pipeline run on the deployment failed (exit $code)"
[[ -s "$work/calls.json" ]] || die "pipeline run wrote no $work/calls.json"

step "the same files on the embedded local stack"
(
  unset AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  set +e
  "$pipeline" --state "$work/local-state" run data --json --consumer >"$work/local-run.json"
  code=$?
  [[ $code == 0 || $code == 3 ]]
)
"$pipeline" contract >"$work/contract.json"
(
  unset AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  exec "$pipeline" --state "$work/up-state" up --dynamodb-port 0 --s3-port 0 --sqs-port 0 --sns-port 0 --consumer >"$work/up.log" 2>&1
) &
up_pid=$!
for _ in $(seq 150); do [[ -f "$work/up-state/up.json" ]] && break; sleep 0.2; done
[[ -f "$work/up-state/up.json" ]] || { cat "$work/up.log"; die "pipeline up did not start (log above)"; }

step "checks: runs equal, identities, IAM grants = calls (actions and resources), variables exact, denied outside the role, same resources"
"$bin/python" terraform/test/check.py all "$endpoint" "$work/outputs.json" "$work/contract.json" \
  "$work/aws-run.json" "$work/local-run.json" "$work/up-state/up.json" "$work/calls.json"

step "terraform destroy leaves nothing"
terraform -chdir=terraform/test destroy -input=false -auto-approve -var "endpoint=$endpoint" -var "operator_arn=$operator" >"$work/destroy.log" || { tail -30 "$work/destroy.log"; die "destroy failed"; }
"$bin/python" terraform/test/check.py leftovers "$endpoint"
took
echo "deployment checks passed: apply to destroy in $(( $(date +%s) - start )) s"
