# expand-functions.awk: builds an update script from its .sql.in.
#   awk -f expand-functions.awk INSTALL_SCRIPT UPDATE.sql.in > UPDATE.sql
# A line "-- @function NAME" of the .sql.in becomes the definition of
# jobq.NAME in INSTALL_SCRIPT (from its CREATE FUNCTION line to the end of
# its COMMENT ON FUNCTION statement) as CREATE OR REPLACE, so that an update
# script does not carry a second copy of any function.  A line "-- @piece
# FILE" becomes the whole of sql/install/FILE: a piece new in this version.
FNR == NR { src[++n] = $0; next }
/^-- @function [A-Za-z_0-9]+$/ {
    name = $3; start = 0
    for (i = 1; i <= n; i++)
        if (index(src[i], "CREATE FUNCTION jobq." name "(") == 1) { start = i; break }
    if (!start) { print "expand-functions.awk: no function jobq." name > "/dev/stderr"; exit 1 }
    sub(/^CREATE FUNCTION/, "CREATE OR REPLACE FUNCTION", src[start])
    in_comment = 0
    for (i = start; i <= n; i++) {
        print src[i]
        if (index(src[i], "COMMENT ON FUNCTION jobq." name "(") == 1) in_comment = 1
        if (in_comment && src[i] ~ /';$/) break
    }
    if (i > n) { print "expand-functions.awk: no comment for jobq." name > "/dev/stderr"; exit 1 }
    next
}
/^-- @piece [A-Za-z_0-9.]+$/ {
    path = "sql/install/" $3; found = 0
    while ((getline line < path) > 0) { print line; found = 1 }
    close(path)
    if (!found) { print "expand-functions.awk: no piece " path > "/dev/stderr"; exit 1 }
    next
}
{ print }
