; Inno Setup script: empanada-desktop-<version>-setup.exe from the PyInstaller bundle.
;
; On a Windows build machine (see packaging/README.md):
;   python packaging\build.py --clean-venv [--models C:\path\to\weights]
;   iscc /DAppVersion=0.1.0 /DDistDir=%CD%\dist packaging\windows\empanada-desktop.iss
; Output: dist\empanada-desktop-<version>-setup.exe
;
; Installs per user by default (no administrator rights needed on lab machines; the dialog
; offers "for all users" too), adds Start-menu shortcuts for the app and for a command prompt
; with empanada-desktop-cli on PATH, an optional desktop icon, and an uninstaller. Nothing is
; downloaded at install or run time.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef DistDir
  #define DistDir "..\..\dist"
#endif

#define AppName "empanada-desktop"
#define AppExe "empanada-desktop.exe"
#define CliExe "empanada-desktop-cli.exe"

[Setup]
AppId={{6A0E5C1B-3D7F-4B8E-9E21-4D2C8E7A9B10}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=empanada-desktop contributors
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#DistDir}
OutputBaseFilename={#AppName}-{#AppVersion}-setup
SetupIconFile=..\..\resources\icons\empanada-desktop.ico
UninstallDisplayIcon={app}\{#AppExe}
LicenseFile=..\..\LICENSE
Compression=lzma2/max
SolidCompression=yes
; PyPI's Windows torch is CPU-only (bundle about 1 GB). A CUDA torch (PyTorch's own index)
; makes the bundle several GB: then set DiskSpanning=yes (setup.exe plus setup-*.bin files),
; as Inno Setup limits the size of a single setup.exe.
DiskSpanning=no
WizardStyle=modern
ChangesAssociations=no

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#DistDir}\{#AppName}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; WorkingDir: "{userdocs}"
Name: "{group}\{#AppName} command prompt"; Filename: "{cmd}"; Parameters: "/K ""set PATH={app};%PATH% && {#CliExe} --help"""; WorkingDir: "{userdocs}"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon; WorkingDir: "{userdocs}"

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
