# The curl examples of ntfy's publishing docs, verbatim: docs/publish.md of binwiederhier/ntfy at
# commit 81a486ad (dual-licensed Apache 2.0 / GPLv2). tests/test_ntfy_clients.py runs each one
# against a real `glimpze serve`, with the host changed and a key added (see that test).
# --- Publishing (docs/publish.md line 8)
curl -d "Backup successful 😀" ntfy.sh/mytopic

# --- Publishing (docs/publish.md line 76)
curl \
  -H "Title: Unauthorized access detected" \
  -H "Priority: urgent" \
  -H "Tags: warning,skull" \
  -d "Remote access to phils-laptop detected. Act right away." \
  ntfy.sh/phil_alerts

# --- Publishing (docs/publish.md line 179)
curl \
  -H "Click: https://home.nest.com/" \
  -H "Attach: https://nest.com/view/yAxkasd.jpg" \
  -H "Actions: http, Open door, https://api.nest.com/open/yAxkasd, clear=true" \
  -H "Email: phil@example.com" \
  -d "There's someone at the door. 🐶
   
Please check if it's a good boy or a hooman. 
Doggies have been known to ring the doorbell." \
  ntfy.sh/mydoorbell

# --- Message title (docs/publish.md line 317)
curl -H "X-Title: Dogs are better than cats" -d "Oh my ..." ntfy.sh/controversial
curl -H "Title: Dogs are better than cats" -d "Oh my ..." ntfy.sh/controversial
curl -H "t: Dogs are better than cats" -d "Oh my ..." ntfy.sh/controversial

# --- Message priority (docs/publish.md line 418)
curl -H "X-Priority: 5" -d "An urgent message" ntfy.sh/phil_alerts
curl -H "Priority: low" -d "Low priority message" ntfy.sh/phil_alerts
curl -H p:4 -d "A high priority message" ntfy.sh/phil_alerts

# --- Tags & emojis 🥳 🎉 (docs/publish.md line 544)
curl -H "X-Tags: warning,mailsrv13,daily-backup" -d "Backup of mailsrv13 failed" ntfy.sh/backups
curl -H "Tags: horse,unicorn" -d "Unicorns are just horses with unique horns" ntfy.sh/backups
curl -H ta:dog -d "Dogs are awesome" ntfy.sh/backups

# --- Markdown formatting (docs/publish.md line 646)
curl \
    -d "Look ma, **bold text**, *italics*, ..." \
    -H "Markdown: yes" \
    ntfy.sh/mytopic

# --- Scheduled delivery (docs/publish.md line 749)
curl -H "At: tomorrow, 10am" -d "Good morning" ntfy.sh/hello
curl -H "In: 30min" -d "It's 30 minutes later now" ntfy.sh/reminder
curl -H "Delay: 1639194738" -d "Unix timestamps are awesome" ntfy.sh/itsaunixsystem

# --- Webhooks (publish via GET) (docs/publish.md line 850)
curl ntfy.sh/mywebhook/trigger

# --- Webhooks (publish via GET) (docs/publish.md line 897)
curl "ntfy.sh/mywebhook/publish?message=Webhook+triggered&priority=high&tags=warning,skull"

# --- Message templating (docs/publish.md line 1008)
# To use { and } in the URL without encoding, we need to turn off
# curl's globbing using --globoff

curl \
    --globoff \
    -d '{"hostname": "phil-pc", "error": {"level": "severe", "desc": "Disk has run out of space"}}' \
    'ntfy.sh/mytopic?tpl=yes&t={{.hostname}}:+A+{{.error.level}}+error+has+occurred&m=Error+message:+{{.error.desc}}'

# --- Publish as JSON (docs/publish.md line 1095)
curl ntfy.sh \
  -d '{
    "topic": "mytopic",
    "message": "Disk space is low at 5.1 GB",
    "title": "Low disk space alert",
    "tags": ["warning","cd"],
    "priority": 4,
    "attach": "https://filesrv.lan/space.jpg",
    "filename": "diskspace.jpg",
    "click": "https://homecamera.lan/xasds1h2xsSsa/",
    "actions": [{ "action": "view", "label": "Admin panel", "url": "https://filesrv.lan/admin" }]
  }'

# --- Using a header (docs/publish.md line 1306)
body='{"temperature": 65}'
curl \
    -d "You left the house. Turn down the A/C?" \
    -H "Actions: view, Open portal, https://home.nest.com/, clear=true; \
                 http, Turn down, https://api.nest.com/, body='$body'" \
    ntfy.sh/myhome

# --- Using a JSON array (docs/publish.md line 1396)
curl ntfy.sh \
  -d '{
    "topic": "myhome",
    "message": "You left the house. Turn down the A/C?",
    "actions": [
      {
        "action": "view",
        "label": "Open portal",
        "url": "https://home.nest.com/",
        "clear": true
      },
      {
        "action": "http",
        "label": "Turn down",
        "url": "https://api.nest.com/",
        "body": "{\"temperature\": 65}"
      }
    ]
  }'

# --- Open website/app (docs/publish.md line 1622)
curl \
    -d "Somebody retweeted your tweet." \
    -H "Actions: view, Open Twitter, https://twitter.com/binwiederhier/status/1467633927951163392" \
ntfy.sh/myhome

# --- Open website/app (docs/publish.md line 1700)
curl ntfy.sh \
  -d '{
    "topic": "myhome",
    "message": "Somebody retweeted your tweet.",
    "actions": [
      {
        "action": "view",
        "label": "Open Twitter",
        "url": "https://twitter.com/binwiederhier/status/1467633927951163392"
      }
    ]
  }'

# --- Send Android broadcast (docs/publish.md line 1873)
curl \
    -d "Your wife requested you send a picture of yourself." \
    -H "Actions: broadcast, Take picture, extras.cmd=pic, extras.camera=front" \
ntfy.sh/wifey

# --- Send Android broadcast (docs/publish.md line 1951)
curl ntfy.sh \
  -d '{
    "topic": "wifey",
    "message": "Your wife requested you send a picture of yourself.",
    "actions": [
      {
        "action": "broadcast",
        "label": "Take picture",
        "extras": {
            "cmd": "pic",
            "camera": "front"
        }
      }
    ]
  }'

# --- Send HTTP request (docs/publish.md line 2142)
curl \
    -d "Garage door has been open for 15 minutes. Close it?" \
    -H "Actions: http, Close door, https://api.mygarage.lan/, method=PUT, headers.Authorization=Bearer zAzsx1sk.., body={\"action\": \"close\"}" \
    ntfy.sh/myhome

# --- Send HTTP request (docs/publish.md line 2220)
curl ntfy.sh \
  -d '{
    "topic": "myhome",
    "message": "Garage door has been open for 15 minutes. Close it?",
    "actions": [
      {
        "action": "http",
        "label": "Close door",
        "url": "https://api.mygarage.lan/",
        "method": "PUT",
        "headers": {
            "Authorization": "Bearer zAzsx1sk.."
        },
        "body": "{\"action\": \"close\"}"
      }
    ]
  }'

# --- Click action (docs/publish.md line 2442)
curl \
    -d "New messages on Reddit" \
    -H "Click: https://www.reddit.com/message/messages" \
    ntfy.sh/reddit_alerts

# --- Attach local file (docs/publish.md line 2537)
curl \
    -T flower.jpg \
    -H "Filename: flower.jpg" \
    ntfy.sh/flowers

# --- Attach file from a URL (docs/publish.md line 2631)
curl \
    -X POST \
    -H "Attach: https://f-droid.org/F-Droid.apk" \
    ntfy.sh/mydownloads

# --- Icons (docs/publish.md line 2711)
curl \
    -H "Icon: https://styles.redditmedia.com/t5_32uhe/styles/communityIcon_xnt6chtnr2j21.png" \
    -H "Title: Kodi: Resuming Playback" \
    -H "Tags: arrow_forward" \
    -d "The Wire, S01E01" \
    ntfy.sh/tvshows

# --- E-mail notifications (docs/publish.md line 2825)
curl \
    -H "Email: phil@example.com" \
    -H "Tags: warning,skull,backup-host,ssh-login" \
    -H "Priority: high" \
    -d "Unknown login from 5.31.23.83 to backups.example.com" \
    ntfy.sh/alerts
curl -H "Email: phil@example.com" -d "You've Got Mail" 
curl -d "You've Got Mail" "ntfy.sh/alerts?email=phil@example.com"

# --- Phone calls (docs/publish.md line 2992)
curl \
    -u :tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2 \
    -H "Call: +12223334444" \
    -d "Your garage seems to be on fire. You should probably check that out." \
    ntfy.sh/alerts

# --- Username + password (docs/publish.md line 3108)
curl \
  -u testuser:fakepassword \
  -d "Look ma, with auth" \
  https://ntfy.example.com/mysecrets

# --- Access tokens (docs/publish.md line 3235)
curl \
  -H "Authorization: Bearer tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2" \
  -d "Look ma, with auth" \
  https://ntfy.example.com/mysecrets

# --- Access tokens (docs/publish.md line 3332)
curl \
  -u :tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2 \
  -d "Look ma, with auth" \
  https://ntfy.example.com/mysecrets

# --- Query param (docs/publish.md line 3416)
curl \
  -d "Look ma, with auth" \
  "https://ntfy.example.com/mysecrets?auth=QmFzaWMgZEdWemRIVnpaWEk2Wm1GclpYQmhjM04zYjNKaw"

# --- Message caching (docs/publish.md line 3524)
curl -H "X-Cache: no" -d "This message won't be stored server-side" ntfy.sh/mytopic
curl -H "Cache: no" -d "This message won't be stored server-side" ntfy.sh/mytopic

# --- Disable Firebase (docs/publish.md line 3607)
curl -H "X-Firebase: no" -d "This message won't be forwarded to FCM" ntfy.sh/mytopic
curl -H "Firebase: no" -d "This message won't be forwarded to FCM" ntfy.sh/mytopic
