; Inno Setup 6 script: Tandem for Windows x64. installers/build.py runs it after PyInstaller:
;   ISCC /DAppVersion=0.1.0 /DSourceDir=build\installer\dist\tandem /DIconFile=build\installer\tandem.ico
;        /Odist installers\windows\tandem.iss
; A per-user install by default (no administrator rights needed; the user may choose all users).
; Not run on this project's Linux machines: built and tested by .github/workflows/installers.yml only.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef SourceDir
  #error Pass /DSourceDir=<PyInstaller's dist\tandem folder>
#endif

[Setup]
AppId={{4F62823D-FC4C-419A-A583-C98F685F5920}
AppName=Tandem
AppVersion={#AppVersion}
AppPublisher=Tandem
DefaultDirName={autopf}\Tandem
DefaultGroupName=Tandem
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputBaseFilename=Tandem-{#AppVersion}-windows-x64-setup
#ifdef IconFile
SetupIconFile={#IconFile}
#endif
UninstallDisplayIcon={app}\tandem-app.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesEnvironment=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the tandem command to PATH (tandem chat, tandem --help)"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Tandem"; Filename: "{app}\tandem-app.exe"
Name: "{autodesktop}\Tandem"; Filename: "{app}\tandem-app.exe"; Tasks: desktopicon

[Registry]
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; \
    Tasks: addtopath; Check: NotInUserPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\tandem-app.exe"; Description: "{cm:LaunchProgram,Tandem}"; Flags: nowait postinstall skipifsilent

[Code]
function NotInUserPath(Dir: string): Boolean;
var
  Path: string;
begin
  if not RegQueryStringValue(HKEY_CURRENT_USER, 'Environment', 'Path', Path) then
    Path := '';
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Path) + ';') = 0;
end;
