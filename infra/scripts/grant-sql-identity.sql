-- Make the function app's user-assigned managed identity a user of the database. Idempotent: run it after
-- every provisioning. sqlcmd variables (-v): IDENTITY_NAME (the identity's name, which becomes the user name)
-- and IDENTITY_PRINCIPAL_ID (its principal/object id). Run as the server's Microsoft Entra admin.
--
-- WITH OBJECT_ID skips the Microsoft Graph lookup, so this also works when a service principal (a pipeline)
-- runs it and the server has no Directory Readers permission.
-- db_ddladmin: the app creates and migrates its own tables on first use (shared/store schema migrations).
SET NOCOUNT ON;

IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = N'$(IDENTITY_NAME)')
BEGIN
    CREATE USER [$(IDENTITY_NAME)] FROM EXTERNAL PROVIDER WITH OBJECT_ID = '$(IDENTITY_PRINCIPAL_ID)';
    PRINT 'created user $(IDENTITY_NAME)';
END
ELSE
    PRINT 'user $(IDENTITY_NAME) already exists';

IF IS_ROLEMEMBER('db_datareader', N'$(IDENTITY_NAME)') = 0
    ALTER ROLE db_datareader ADD MEMBER [$(IDENTITY_NAME)];

IF IS_ROLEMEMBER('db_datawriter', N'$(IDENTITY_NAME)') = 0
    ALTER ROLE db_datawriter ADD MEMBER [$(IDENTITY_NAME)];

IF IS_ROLEMEMBER('db_ddladmin', N'$(IDENTITY_NAME)') = 0
    ALTER ROLE db_ddladmin ADD MEMBER [$(IDENTITY_NAME)];

SELECT p.name AS user_name, r.name AS role_name
FROM sys.database_role_members AS m
JOIN sys.database_principals AS r ON r.principal_id = m.role_principal_id
JOIN sys.database_principals AS p ON p.principal_id = m.member_principal_id
WHERE p.name = N'$(IDENTITY_NAME)'
ORDER BY r.name;
GO
