#!/usr/bin/env bash
# Citations of the project documents must resolve inside the repository.
#
#   bash docs_citations.sh REPO_ROOT        (ctest: docs_citations)
#
# Fails (exit 1, one "file:line: problem" per finding) when
#  (a) any file, docs/ included, names one of the project documents without
#      the docs/ prefix, or any file mentions the shared reference folder or a
#      reference document that is not in the repository;
#  (b) a "docs/<name>.md" that does not exist is named, or a citation
#      "docs/<name>.md §N" (or "#N"; ranges "§N-§M" check both ends) names
#      a section N that no heading of that document carries.
#
# A section exists when a Markdown heading line of the document contains the
# token "§N" (e.g. "## §7. Approval", "### §4a: 4(a) Short delay",
# "### §1.1 Headers"). Exit 0 when everything resolves, 2 on usage errors.
#
# No document name is spelled out with its ".md" here, and the folder name
# is written as a bracket expression, so neither this file nor a mechanical
# rewrite of the tree's citations ever matches this file itself.
set -euo pipefail
# Byte semantics: "§" is matched as its UTF-8 bytes, whatever the locale.
export LC_ALL=C

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
  echo "usage: $0 REPO_ROOT" >&2
  exit 2
fi
cd "$1"
if [ ! -d docs ]; then
  echo "docs_citations: FAIL: $PWD has no docs/ folder" >&2
  exit 1
fi

ext=md
# The project documents every citation outside docs/ must prefix with docs/.
names=(decisions libcoap-4.3.1 mosquitto-2.0.11 performance prior-art requirements architecture)
# Reference documents that live outside the repository. Naming one is
# pointing outside the repo, unless a copy has been added under docs/.
foreign=()
for n in est-coaps-spec house-style test-peers; do
  if [ -f "docs/$n.$ext" ]; then
    names+=("$n")
  else
    foreign+=("$n")
  fi
done

re_quote() { sed -e 's/[.[\*^$()+?{}|]/\\&/g' <<<"$1"; }
alt() {
  local out="" n
  for n in "$@"; do out+="${out:+|}$(re_quote "$n")"; done
  printf '%s' "$out"
}
names_re=$(alt "${names[@]}")
# Section tokens: 7, 4a, 1.1, 0.10, 4(a).
tok='[0-9]+(?:\.[0-9]+)*(?:[a-z]\b|\([a-z]\))?'

problems=$(mktemp)
trap 'rm -f "$problems"' EXIT
report() { printf '%s\n' "$*" >>"$problems"; }

# Every text file of the tree except version control and build output (the
# same folders .gitignore leaves out).
files=()
while IFS= read -r -d '' f; do
  files+=("${f#./}")
done < <(find . \( -path ./.git -o -path './build' -o -path './build-*' -o -path ./demo \) -prune \
  -o -type f -print0 | sort -z)

# The section token of each heading of one document (the first "§" in the
# heading; "(a)" as "a"), one per line.
sections_of() {
  grep -oP "^#{1,6}[ \\t](?:(?!§).)*§\\K$tok" "$1" | tr -d '()' | sort -u || true
}
declare -A known=()
for d in docs/*."$ext"; do
  [ -f "$d" ] || continue
  known["$d"]=$'\n'"$(sections_of "$d")"$'\n'
done

# Only text files that mention a document at all need the checks below.
candidates=()
if [ ${#files[@]} -gt 0 ]; then
  while IFS= read -r -d '' f; do
    candidates+=("$f")
  done < <(printf '%s\0' "${files[@]}" |
    xargs -0 grep -lIZE -e "\\.$ext" -e 'shared[/]reference' -- 2>/dev/null || true)
fi

for f in "${candidates[@]}"; do
  in_docs=0
  case "$f" in docs/*) in_docs=1 ;; esac

  # (a) The shared reference folder, from anywhere.
  while IFS=: read -r ln _; do
    report "$f:$ln: points at the shared reference folder outside the repository"
  done < <(grep -nE 'shared[/]reference' "$f" || true)

  # (a) Reference documents that are not in the repository.
  if [ ${#foreign[@]} -gt 0 ]; then
    while IFS=: read -r ln hit; do
      report "$f:$ln: cites $hit, which is not in the repository"
    done < <(grep -noP "(?<![A-Za-z0-9_-])(?:$(alt "${foreign[@]}"))\\.$ext(?![A-Za-z0-9_])" "$f" || true)
  fi

  # (a) Bare document names, in docs/ too: a citation reads the same
  # wherever it stands.
  while IFS=: read -r ln hit; do
    report "$f:$ln: cites $hit without the docs/ prefix (docs/$hit)"
  done < <(grep -noP "(?<![A-Za-z0-9_-])(?<!docs/)(?:$names_re)\\.$ext(?![A-Za-z0-9_])" "$f" || true)

  # (b) A docs/ document that does not exist, cited with or without a section.
  while IFS=: read -r ln hit; do
    [ -n "${known[$hit]+x}" ] || report "$f:$ln: cites $hit, which does not exist"
  done < <(grep -noP "(?<![A-Za-z0-9_./-])docs/[A-Za-z0-9_.-]+\\.$ext(?![A-Za-z0-9_])" "$f" || true)

  # (b) Section citations. Prefixed ones anywhere; bare ones inside docs/.
  pat="docs/[A-Za-z0-9_.-]+\\.$ext[ \\t]*(?:§|#)$tok(?:[ \\t]*(?:-|–)[ \\t]*§?$tok)?"
  if [ $in_docs = 1 ]; then
    pat="(?:$pat|(?<![A-Za-z0-9_/-])[A-Za-z0-9_.-]+\\.$ext[ \\t]*(?:§|#)$tok(?:[ \\t]*(?:-|–)[ \\t]*§?$tok)?)"
  fi
  while IFS=: read -r ln cite; do
    doc=$(grep -oP "^[A-Za-z0-9_./-]+\\.$ext" <<<"$cite")
    case "$doc" in docs/*) ;; *) doc="docs/$doc" ;; esac
    if [ -z "${known[$doc]+x}" ]; then
      # A missing docs/<name> was reported above; a bare sibling name here.
      case "$cite" in docs/*) ;; *) report "$f:$ln: '$cite': $doc does not exist" ;; esac
      continue
    fi
    rest=${cite#*."$ext"}
    while IFS= read -r s; do
      s=${s//[()]/}
      case "${known[$doc]}" in
        *$'\n'"$s"$'\n'*) ;;
        *) report "$f:$ln: '$cite': $doc has no heading with §$s" ;;
      esac
    done < <(grep -oP "(?:§|#)\\K$tok" <<<"$rest")
  done < <(grep -noP "$pat" "$f" || true)
done

if [ -s "$problems" ]; then
  n=$(wc -l <"$problems")
  echo "docs_citations: FAIL: $n citation problem(s):" >&2
  cat "$problems" >&2
  echo "Cite the project documents as docs/<name>.$ext §N, with §N in a heading of that file." >&2
  exit 1
fi
echo "docs_citations: PASS (${#files[@]} files checked)"
