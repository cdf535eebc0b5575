-- Argo CD health of agentgov.dev Agents, AgentPromotions and PolicyBundles.
--   Progressing  no status yet, or the status describes an older generation
--   Degraded     an Agent is GOVERNED_INVALIDATED, or Ready is False (with its reason and message)
--   Progressing  Ready is False because a person must act: an Agent AwaitingApproval (it names
--                the spec hash to approve), an AgentPromotion Pending (more approvals needed)
--   Healthy      Ready is True for the current generation (an AgentPromotion Approved or
--                Superseded; Denied and Expired are Degraded)
--   Progressing  otherwise (Ready Unknown or absent)
local hs = {}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the agentgov operator to write a status"
  return hs
end

local ready = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end

local observed = status.observedGeneration
if observed == nil and ready ~= nil then
  observed = ready.observedGeneration
end
if obj.metadata.generation ~= nil and observed ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

local function describe(condition, fallback)
  if condition == nil then
    return fallback
  end
  local text = condition.reason or fallback
  if condition.message ~= nil and condition.message ~= "" then
    text = text .. ": " .. condition.message
  end
  return text
end

if status.governanceStatus == "GOVERNED_INVALIDATED" then
  hs.status = "Degraded"
  hs.message = "GOVERNED_INVALIDATED: " .. describe(ready, "invalidated")
  return hs
end
local waiting = {AwaitingApproval = true, Pending = true}
if ready ~= nil and ready.status == "False" and waiting[ready.reason] then
  hs.status = "Progressing"
  hs.message = describe(ready, "Waiting")
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end
hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
