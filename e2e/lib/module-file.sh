# shellcheck shell=bash
# module_file MODULE VERSION MODULE_SUM FILE_PATH FILE_SHA256 OUT: print OUT, a cached copy of the
# file FILE_PATH of the Go module MODULE@VERSION, taken with `go mod download` through the Go
# module proxy once (Go checks the module against sum.golang.org; this checks the module sum
# and the file's SHA-256 pinned by the caller). A cached copy is used when its hash is the pinned
# one, so a warm run only hashes the file; concurrent runs take a lock. The caller defines
# `log` and `die`.
module_file() {
  local module=$1 version=$2 module_sum=$3 file_path=$4 file_sha256=$5 out=$6
  local out_dir
  out_dir="$(dirname -- "${out}")"
  if file_has_hash "${out}" "${file_sha256}"; then
    printf '%s\n' "${out}"
    return 0
  fi
  mkdir -p "${out_dir}"
  exec 9>"${out_dir}/.lock"
  flock 9
  if file_has_hash "${out}" "${file_sha256}"; then # fetched by a concurrent run
    printf '%s\n' "${out}"
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "go is not on PATH (the file comes from the Go module ${module}@${version})"
  # A scratch directory: `go mod download` of a module@version needs no go.mod, and must not
  # read (or write) one that happens to be in the working directory.
  local scratch json sum dir src got
  scratch="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand now: the trap runs after this function returns
  trap "rm -rf -- '${scratch}'" EXIT
  log "go mod download ${module}@${version}"
  json="$(cd "${scratch}" && GOFLAGS=-mod=mod go mod download -json "${module}@${version}")" \
    || die "go mod download ${module}@${version} failed: ${json:-no output}"
  field() { printf '%s\n' "${json}" | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]) or "")' "$1"; }
  [[ -z "$(field Error)" ]] || die "go mod download ${module}@${version}: $(field Error)"
  sum="$(field Sum)"
  dir="$(field Dir)"
  [[ "${sum}" == "${module_sum}" ]] || die "${module}@${version} has sum ${sum:-none}, pinned ${module_sum}"
  src="${dir}/${file_path}"
  [[ -f "${src}" ]] || die "${module}@${version} has no ${file_path} (in ${dir})"
  got="$(sha256sum "${src}" | awk '{print $1}')"
  [[ "${got}" == "${file_sha256}" ]] || die "${file_path} of ${module}@${version} has sha256 ${got}, pinned ${file_sha256}"
  # Atomically: a reader never sees half a file.
  cp -- "${src}" "${out}.tmp"
  chmod u+w "${out}.tmp"
  mv -f -- "${out}.tmp" "${out}"
  log "${out} (${module}@${version}, sha256 ${file_sha256})"
  printf '%s\n' "${out}"
}

# file_has_hash FILE SHA256: FILE exists and hashes to SHA256.
file_has_hash() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | awk '{print $1}')" == "$2" ]]; }
