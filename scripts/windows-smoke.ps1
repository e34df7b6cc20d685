# execgate's Windows enforcement, checked on a real Windows machine (Wine,
# which CI uses, enforces neither restricted tokens nor file DACLs).
# Prints PASS or FAIL per case and exits non-zero if any failed.
#
#   powershell -ExecutionPolicy Bypass -File scripts\windows-smoke.ps1 [-Execgate path\to\execgate.exe]
#
# Build first: cargo build --release -p execgate-cli. Run as an ordinary
# (non-administrator) user. The Rust tests of the same cases:
#   cargo test -p execgate-sandbox -- --ignored windows::tests::enforcement
param(
    [string]$Execgate = "target\release\execgate.exe"
)
$ErrorActionPreference = "Stop"
$Execgate = (Resolve-Path $Execgate).Path
$failures = 0
function Check([string]$name, [bool]$ok, [string]$detail = "") {
    if ($ok) { Write-Output "PASS $name" }
    else { Write-Output "FAIL $name $detail"; $script:failures++ }
}

$base = Join-Path ([IO.Path]::GetTempPath()) ("execgate-smoke-" + [Guid]::NewGuid())
$ws = Join-Path $base "ws"
$outside = Join-Path $base "outside"
New-Item -ItemType Directory -Force $ws, $outside, (Join-Path $ws ".git") | Out-Null
$profiles = Join-Path $base "profiles.toml"
Set-Content $profiles "[profiles.offline]`nextends = `"workspace-write`"`nwindows_network = `"best-effort`"`n"

function Run-Execgate([string[]]$arguments) {
    & $Execgate run --profiles $profiles --profile offline --cwd $ws -- @arguments 2>&1 | Out-Null
    return $LASTEXITCODE
}

# 1. A write inside the working directory succeeds.
$code = Run-Execgate @("cmd", "/d", "/c", "echo x> inside.txt")
Check "write inside the workspace" (($code -eq 0) -and (Test-Path (Join-Path $ws "inside.txt"))) "exit $code"

# 2. A write outside every writable root is denied.
$target = Join-Path $outside "outside.txt"
$code = Run-Execgate @("cmd", "/d", "/c", "echo x> `"$target`"")
Check "write outside the roots is denied" (($code -ne 0) -and -not (Test-Path $target)) "exit $code"

# 3. .git under the workspace is not writable.
$code = Run-Execgate @("cmd", "/d", "/c", "echo x> .git\config")
Check ".git is not writable" (($code -ne 0) -and -not (Test-Path (Join-Path $ws ".git\config"))) "exit $code"

# 4. .agents was created beforehand and nothing can be made in it.
$code = Run-Execgate @("cmd", "/d", "/c", "mkdir .agents\x")
Check ".agents is protected" (($code -ne 0) -and -not (Test-Path (Join-Path $ws ".agents\x"))) "exit $code"

# 5. ACEs are reused: a second run adds none.
$before = (Get-Acl $ws).Access.Count
Run-Execgate @("cmd", "/d", "/c", "exit 0") | Out-Null
$after = (Get-Acl $ws).Access.Count
Check "ACEs are reused, not piled up" ($before -eq $after) "$before then $after"

# 6. A profile that restricts reads is refused.
& $Execgate run --profile read-only --cwd $ws -- cmd /d /c "echo no" 2>&1 | Out-Null
Check "read-restricting profile refused" ($LASTEXITCODE -eq 125) "exit $LASTEXITCODE"

# 7. A restricted network without the opt-in is refused.
& $Execgate run --profile workspace-write --cwd $ws -- cmd /d /c "echo no" 2>&1 | Out-Null
Check "restricted network refused without opt-in" ($LASTEXITCODE -eq 125) "exit $LASTEXITCODE"

# 8. The job ends what the command left running.
$marker = "execgate-smoke-" + [Guid]::NewGuid().ToString("N").Substring(0, 8)
Run-Execgate @("cmd", "/d", "/c", "start /b cmd /d /c `"title $marker & ping -n 120 127.0.0.1 >NUL`" & exit 0") | Out-Null
Start-Sleep -Seconds 2
$left = Get-CimInstance Win32_Process -Filter "Name = 'PING.EXE'" |
    Where-Object { $_.CommandLine -like "*-n 120 127.0.0.1*" }
Check "the job kills the process tree" ($null -eq $left) "left: $($left.ProcessId)"

# 9. An audit log reached through a junction in the workspace is warned of:
#    the sandbox could point the junction elsewhere (Wine makes no junctions).
$logs = Join-Path $base "logs"
New-Item -ItemType Directory -Force $logs | Out-Null
New-Item -ItemType Junction -Path (Join-Path $ws "logs") -Target $logs | Out-Null
$warning = & $Execgate run --profiles $profiles --profile offline --cwd $ws `
    --audit-log (Join-Path $ws "logs\audit.jsonl") -- cmd /d /c "exit 0" 2>&1 | Out-String
Check "a log through a junction in reach is warned of" ($warning -like "*in reach of this session's sandbox*") $warning

# 10. doctor sees a restricted token.
$doctor = & $Execgate doctor --json | ConvertFrom-Json
Check "doctor: restricted token" ($doctor."restricted token" -like "ok*") $doctor."restricted token"

Remove-Item -Recurse -Force $base -ErrorAction SilentlyContinue
if ($failures -gt 0) { Write-Output "$failures case(s) failed"; exit 1 }
Write-Output "all cases passed"
